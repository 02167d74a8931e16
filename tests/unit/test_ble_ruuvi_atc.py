"""Ruuvi "not available" per field, and the ATC length rules."""

from __future__ import annotations

from drivers.ble import atc, ruuvi
from drivers.ble.common import Decoded, Reason, Rejected
from drivers.ble.decode import decode_advertisement
from gateway.model import Quantity
from tests.support import ble_encode

H = bytes.fromhex
MAC = H("CBB8334C884F")


def test_each_unavailable_ruuvi_field_is_absent_not_zero() -> None:
    sd = ble_encode.ruuvi5(-32768, 21396, 0xFFFF, (4, -4, 1036), 0x7FF, 22, 66, 205, MAC)
    decoded = ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: sd})
    assert isinstance(decoded, Decoded)
    assert [(r.quantity, r.value) for r in decoded.readings] == [(Quantity.HUMIDITY, 53.49)]


def test_ruuvi_other_company_and_lengths() -> None:
    assert ruuvi.decode("CB:B8:33:4C:88:4F", {0x004C: b"\x05" * 24}) is None
    assert ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: b""}) == Rejected("ruuvi5", Reason.TRUNCATED)
    long = ble_encode.ruuvi5(0, 0, 0, (0, 0, 0), 0, 0, 0, 0, MAC) + b"\x00"
    assert ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: long}) == Rejected("ruuvi5", Reason.OVERSIZED)


def test_atc_lengths() -> None:
    for n in range(0, 20):
        result = atc.decode("00:00:00:00:00:00", {atc.SERVICE_UUID: bytes(n)})
        assert isinstance(result, Decoded) == (n in (13, 15)), n


ATC_MAC = H("A4C138D5D498")


def test_a_payload_carrying_another_devices_mac_is_refused() -> None:
    sender = "A4:C1:38:D5:D4:98"
    other = H("A4C138000001")
    for good, forged in (
        (ble_encode.atc1441(ATC_MAC, 215, 45, 90, 3000, 1), ble_encode.atc1441(other, 215, 45, 90, 3000, 1)),
        (ble_encode.pvvx(ATC_MAC, 2150, 4500, 3000, 90, 1, 0), ble_encode.pvvx(other, 2150, 4500, 3000, 90, 1, 0)),
    ):
        assert isinstance(atc.decode(sender, {atc.SERVICE_UUID: good}), Decoded)
        assert atc.decode(sender, {atc.SERVICE_UUID: forged}) == Rejected("atc", Reason.MAC_MISMATCH)
    ruuvi_other = ble_encode.ruuvi5(4000, 20000, 50000, (0, 0, 0), 1400, 22, 0, 1, other)
    assert ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: ruuvi_other}) == Rejected("ruuvi5", Reason.MAC_MISMATCH)
    unknown = ble_encode.ruuvi5(4000, 20000, 50000, (0, 0, 0), 1400, 22, 0, 1, b"\xff" * 6)
    assert isinstance(ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: unknown}), Decoded)


def test_physically_impossible_values_are_refused_whole() -> None:
    # The issue's Ruuvi body: 157.9 % humidity (raw 63160 / 400).
    wet = ble_encode.ruuvi5(4000, 63160, 50000, (0, 0, 0), 1400, 22, 0, 1, MAC)
    assert isinstance(ruuvi.decode("CB:B8:33:4C:88:4F", {ruuvi.COMPANY_ID: wet}), Decoded)  # the format allows it
    assert decode_advertisement("CB:B8:33:4C:88:4F", {}, {ruuvi.COMPANY_ID: wet}) == [
        Rejected("ruuvi5", Reason.BAD_VALUE)
    ]
    hot = ble_encode.atc1441(ATC_MAC, 1300, 45, 90, 3000, 1)  # 130.0 °C
    assert decode_advertisement("A4:C1:38:D5:D4:98", {atc.SERVICE_UUID: hot}, {}) == [
        Rejected("atc1441", Reason.BAD_VALUE)
    ]
    full = ble_encode.atc1441(ATC_MAC, 215, 100, 101, 3000, 1)  # battery 101 %
    assert decode_advertisement("A4:C1:38:D5:D4:98", {atc.SERVICE_UUID: full}, {}) == [
        Rejected("atc1441", Reason.BAD_VALUE)
    ]
    edge = ble_encode.atc1441(ATC_MAC, -600, 0, 100, 3000, 1)  # the bounds themselves are physical
    assert isinstance(decode_advertisement("A4:C1:38:D5:D4:98", {atc.SERVICE_UUID: edge}, {})[0], Decoded)
