"""Xiaomi MiBeacon (service data 0xFE95), plaintext and v4/v5 AES-CCM encrypted with the device's bind key.

Layout: ``frame control u16 | product id u16 | frame counter u8 | [MAC 6, reversed] | [capability u8 (+ IO u16)] |
objects | [ext counter 3 + MIC 4 if encrypted]``; an object is ``id u16 | len u8 | data`` (pvvx/ATC_MiThermometer
"Mijia BLE MiBeacon protocol v5" and "Mijia BLE Object Definition").

Deliberate differences from xiaomi-ble: smoke property 0x1015 value 2 (equipment failure) is a fault, never smoke;
smoke event 0x000D is decoded (3 self-check and 4 simulated alarm are tests); humidity keeps its decimal (xiaomi-ble
truncates it for LYWSD03MMC); no battery voltage is estimated from the percentage; a plaintext object beacon from a
device whose bind key we hold is refused; legacy v2/v3 encryption (no authentication tag) is not decoded; the I/O
capability after the capability byte is skipped as the u16 the spec defines (xiaomi-ble skips one byte).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidTag

from drivers.ble.common import MAX_AD_PAYLOAD, Decoded, Reason, Rejected, ReplayState, ccm, mac_bytes, uuid16
from gateway.model import DeviceKind, Event, EventKind, Quantity, Reading, SmokeState, device_id

FMT: Final = "mibeacon"
SERVICE_UUID: Final = uuid16(0xFE95)

# product id: (model, kind, sleepy); ids from xiaomi-ble devices.py.
PRODUCTS: Final[dict[int, tuple[str, DeviceKind, bool]]] = {
    0x055B: ("LYWSD03MMC", DeviceKind.SENSOR, False),
    0x0347: ("CGG1", DeviceKind.SENSOR, False),
    0x0B48: ("CGG1-ENCRYPTED", DeviceKind.SENSOR, False),
    0x01AA: ("LYWSDCGQ", DeviceKind.SENSOR, False),
    0x045B: ("LYWSD02", DeviceKind.SENSOR, False),
    0x066F: ("CGDK2", DeviceKind.SENSOR, False),
    0x0387: ("MHO-C401", DeviceKind.SENSOR, False),
    0x0997: ("JTYJGD03MI", DeviceKind.SMOKE_DETECTOR, True),
}

# Smoke property 0x1015 and smoke event 0x000D. Event value 4 is 模拟报警, a *simulated* alarm, i.e. a test.
SMOKE_PROPERTY: Final[dict[int, SmokeState]] = {0: SmokeState.CLEAR, 1: SmokeState.SMOKE, 2: SmokeState.FAULT}
SMOKE_EVENT: Final[dict[int, SmokeState]] = {
    0: SmokeState.CLEAR,
    1: SmokeState.SMOKE,
    2: SmokeState.FAULT,
    3: SmokeState.TEST,
    4: SmokeState.TEST,
}
PRESS_TYPES: Final[dict[int, str]] = {0: "press", 1: "double_press", 2: "long_press"}

_AAD: Final = b"\x11"


def decode(
    address: str,
    service_data: Mapping[str, bytes],
    *,
    bindkey: bytes | None = None,
    state: ReplayState | None = None,
    ts: float = 0.0,
) -> Decoded | Rejected | None:
    """Decodes the MiBeacon service data in one advertisement, or None if it carries none."""
    data = service_data.get(SERVICE_UUID)
    if data is None:
        return None
    n = len(data)
    if n < 5:
        return Rejected(FMT, Reason.TRUNCATED)
    if n > MAX_AD_PAYLOAD:
        return Rejected(FMT, Reason.OVERSIZED)
    fc = data[0] | data[1] << 8
    if fc & 0x80 or fc >> 12 < 2:  # mesh beacons and versions before 2 are other protocols
        return Rejected(FMT, Reason.UNSUPPORTED)
    product = PRODUCTS.get(data[2] | data[3] << 8)
    if product is None:
        return Rejected(FMT, Reason.UNKNOWN_PRODUCT)
    mac = mac_bytes(address)
    if mac is None:
        return Rejected(FMT, Reason.BAD_ADDRESS)
    i = 5
    if fc & 0x10:
        i = 11
        if n < i:
            return Rejected(FMT, Reason.TRUNCATED)
        if data[10:4:-1] != mac:
            return Rejected(FMT, Reason.MAC_MISMATCH)
    if fc & 0x20:
        i += 3 if data[i : i + 1] and data[i] & 0x20 else 1
        if n < i:
            return Rejected(FMT, Reason.TRUNCATED)
    if not fc & 0x40:
        return Rejected(FMT, Reason.NO_OBJECT)
    if fc & 0x08:
        if fc >> 12 < 4:
            return Rejected(FMT, Reason.UNSUPPORTED)  # legacy encryption has no tag: a wrong key gives garbage
        if bindkey is None:
            return Rejected(FMT, Reason.NO_KEY)
        if n < i + 9:
            return Rejected(FMT, Reason.TRUNCATED)
        counter = data[4] | int.from_bytes(data[-7:-4], "little") << 8
        if state is not None and (why := state.check_counter(FMT, address, counter)) is not None:
            return Rejected(FMT, why)
        nonce = mac[::-1] + data[2:5] + data[-7:-4]
        try:
            payload = ccm(bindkey).decrypt(nonce, data[i:-7] + data[-4:], _AAD)
        except (InvalidTag, ValueError):
            return Rejected(FMT, Reason.AUTH_FAILED)
        if state is not None:
            state.commit_counter(FMT, address, counter)
    else:
        if bindkey is not None:
            return Rejected(FMT, Reason.DOWNGRADE)
        if n < i + 3:
            return Rejected(FMT, Reason.TRUNCATED)
        payload = data[i:]
    return _objects(address, payload, product, ts)


def _objects(address: str, payload: bytes, product: tuple[str, DeviceKind, bool], ts: float) -> Decoded | Rejected:
    model, kind, sleepy = product
    did = device_id("ble", address)
    readings: list[Reading] = []
    events: list[Event] = []
    note: Reason | None = None
    pos = 0
    end = len(payload)
    while pos + 3 <= end:
        oid = payload[pos] | payload[pos + 1] << 8
        start = pos + 3
        pos = start + payload[pos + 2]
        if pos > end:
            note = Reason.TRUNCATED
            break
        obj = payload[start:pos]
        size = pos - start
        if oid == 0x100D and size == 4:
            readings.append(
                Reading(did, Quantity.TEMPERATURE, int.from_bytes(obj[0:2], "little", signed=True) / 10, ts)
            )
            readings.append(Reading(did, Quantity.HUMIDITY, int.from_bytes(obj[2:4], "little") / 10, ts))
        elif oid == 0x1004 and size == 2:
            readings.append(Reading(did, Quantity.TEMPERATURE, int.from_bytes(obj, "little", signed=True) / 10, ts))
        elif oid == 0x1006 and size == 2:
            readings.append(Reading(did, Quantity.HUMIDITY, int.from_bytes(obj, "little") / 10, ts))
        elif oid == 0x100A and size >= 1:
            readings.append(Reading(did, Quantity.BATTERY, float(obj[0]), ts))
        elif oid == 0x1007 and size == 3:
            readings.append(Reading(did, Quantity.ILLUMINANCE, float(int.from_bytes(obj, "little")), ts))
        elif oid in (0x1015, 0x000D) and size >= 1:
            smoke = (SMOKE_PROPERTY if oid == 0x1015 else SMOKE_EVENT).get(obj[0])
            if smoke is None:
                note = Reason.BAD_VALUE
            else:
                events.append(Event(device_id=did, kind=EventKind.SMOKE, state=smoke, ts=ts))
        elif oid == 0x1001 and size == 3:
            press = PRESS_TYPES.get(obj[2])
            if press is None:
                note = Reason.BAD_VALUE
            else:
                attrs: dict[str, str | float | int | bool] = (
                    {"button": "test"} if kind is DeviceKind.SMOKE_DETECTOR else {}
                )
                events.append(Event(device_id=did, kind=EventKind.BUTTON, state=press, ts=ts, attrs=attrs))
        elif oid in (0x100D, 0x1004, 0x1006, 0x100A, 0x1007, 0x1015, 0x000D, 0x1001):
            note = Reason.BAD_VALUE  # a known object with the wrong length
        else:
            note = Reason.UNKNOWN_OBJECT
    if pos < end and note is None:
        note = Reason.TRUNCATED
    if not readings and not events:
        return Rejected(FMT, note or Reason.NO_OBJECT)
    return Decoded(
        fmt=FMT,
        device_id=did,
        model=model,
        kind=kind,
        readings=tuple(readings),
        events=tuple(events),
        sleepy=sleepy,
        note=note,
    )
