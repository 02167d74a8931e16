"""Ruuvi "not available" per field, and the ATC length rules."""

from __future__ import annotations

from drivers.ble import atc, ruuvi
from drivers.ble.common import Decoded, Reason, Rejected
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
        result = atc.decode("A4:C1:38:D5:D4:98", {atc.SERVICE_UUID: bytes(n)})
        assert isinstance(result, Decoded) == (n in (13, 15)), n
