"""BTHome v2 (service data 0xFCD2), plaintext and AES-CCM encrypted; https://bthome.io/format.

Layout: ``[device info][6-byte MAC, reversed, if flagged][objects...]``; encrypted:
``[device info][MAC?][ciphertext][counter u32 LE][MIC 4]`` with nonce ``MAC + d2fc + device info + counter``.
An object is ``[id][value]`` whose length is fixed by the id, so an unknown id ends the packet: what came before it
is kept (as bthome-ble does) and the packet is noted as partial.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Final

import msgspec
from cryptography.exceptions import InvalidTag

from drivers.ble.common import MAX_AD_PAYLOAD, Decoded, Reason, Rejected, ReplayState, ccm, mac_bytes, uuid16
from gateway.model import DeviceKind, Event, EventKind, Quantity, Reading, SmokeState, device_id

FMT: Final = "bthome"
SERVICE_UUID: Final = uuid16(0xFCD2)
MODEL: Final = "BTHome v2"

# Binary and event objects, by what they mean to the hub.
_PACKET_ID = "packet_id"
_SMOKE = "smoke"
_TAMPER = "tamper"
_BATTERY_LOW = "battery_low"
_MOTION = "motion"
_CONTACT = "contact"
_LEAK = "leak"
_BUTTON = "button"
_VARIABLE = -1  # length byte follows the id (text, raw)
_COMMAND = -2  # length byte's low 5 bits are the argument count, after a 1-byte opcode

# id: (length, signed, factor, what). Protocol as data: lengths for every id in bthome-ble's const.py, so that
# objects the hub has no use for are skipped rather than ending the packet. ``what`` None means skip.
_Obj = tuple[int, bool, float, Quantity | str | None]
OBJECTS: Final[dict[int, _Obj]] = {
    0x00: (1, False, 1, _PACKET_ID),
    0x01: (1, False, 1, Quantity.BATTERY),
    0x02: (2, True, 0.01, Quantity.TEMPERATURE),
    0x03: (2, False, 0.01, Quantity.HUMIDITY),
    0x04: (3, False, 0.01, Quantity.PRESSURE),
    0x05: (3, False, 0.01, Quantity.ILLUMINANCE),
    0x06: (2, False, 0.01, None),
    0x07: (2, False, 0.01, None),
    0x08: (2, True, 0.01, None),
    0x09: (1, False, 1, None),
    0x0A: (3, False, 0.001, None),
    0x0B: (3, False, 0.01, None),
    0x0C: (2, False, 0.001, Quantity.VOLTAGE),
    0x0D: (2, False, 1, Quantity.PM25),
    0x0E: (2, False, 1, None),
    0x0F: (1, False, 1, None),
    0x10: (1, False, 1, None),
    0x11: (1, False, 1, _CONTACT),
    0x12: (2, False, 1, Quantity.CO2),
    0x13: (2, False, 1, None),
    0x14: (2, False, 0.01, None),
    0x15: (1, False, 1, _BATTERY_LOW),
    **{i: (1, False, 1, None) for i in range(0x16, 0x29)},
    0x1A: (1, False, 1, _CONTACT),
    0x20: (1, False, 1, _LEAK),
    0x21: (1, False, 1, _MOTION),
    0x29: (1, False, 1, _SMOKE),
    0x2A: (1, False, 1, None),
    0x2B: (1, False, 1, _TAMPER),
    0x2C: (1, False, 1, None),
    0x2D: (1, False, 1, _CONTACT),
    0x2E: (1, False, 1, Quantity.HUMIDITY),
    0x2F: (1, False, 1, None),
    0x3A: (1, False, 1, _BUTTON),
    0x3B: (_COMMAND, False, 1, None),
    0x3C: (2, False, 1, None),
    0x3D: (2, False, 1, None),
    0x3E: (4, False, 1, None),
    0x3F: (2, True, 0.1, None),
    0x40: (2, False, 1, None),
    0x41: (2, False, 0.1, None),
    0x42: (3, False, 0.001, None),
    0x43: (2, False, 0.001, None),
    0x44: (2, False, 0.01, None),
    0x45: (2, True, 0.1, Quantity.TEMPERATURE),
    0x46: (1, False, 0.1, None),
    0x47: (2, False, 0.1, None),
    0x48: (2, False, 1, None),
    0x49: (2, False, 0.001, None),
    0x4A: (2, False, 0.1, Quantity.VOLTAGE),
    0x4B: (3, False, 0.001, None),
    0x4C: (4, False, 0.001, None),
    0x4D: (4, False, 0.001, None),
    0x4E: (4, False, 0.001, None),
    0x4F: (4, False, 0.001, None),
    0x50: (4, False, 1, None),
    0x51: (2, False, 0.001, None),
    0x52: (2, False, 0.001, None),
    0x53: (_VARIABLE, False, 1, None),
    0x54: (_VARIABLE, False, 1, None),
    0x55: (4, False, 0.001, None),
    0x56: (2, False, 1, None),
    0x57: (1, True, 1, Quantity.TEMPERATURE),
    0x58: (1, True, 0.35, Quantity.TEMPERATURE),
    0x59: (1, True, 1, None),
    0x5A: (2, True, 1, None),
    0x5B: (4, True, 1, None),
    0x5C: (4, True, 0.01, None),
    0x5D: (2, True, 0.001, None),
    0x5E: (2, False, 0.01, None),
    0x5F: (2, False, 0.1, None),
    0x60: (1, False, 1, None),
    0x61: (2, False, 1, None),
    0x62: (4, True, 0.000001, None),
    0x63: (4, True, 0.000001, None),
    0x64: (1, False, 1, None),
    0x65: (1, False, 1, None),
    0xF0: (2, False, 1, None),
    0xF1: (4, False, 1, None),
    0xF2: (3, False, 1, None),
}

# Values are rounded to the factor's decimal places, exactly as bthome-ble does, so both agree to the digit.
_DECIMALS: Final[dict[float, int]] = {f: -int(f"{f:e}".split("e")[-1]) for (_, _, f, _) in OBJECTS.values()}

BUTTON_EVENTS: Final[dict[int, str]] = {
    0x01: "press",
    0x02: "double_press",
    0x03: "triple_press",
    0x04: "long_press",
    0x05: "long_double_press",
    0x06: "long_triple_press",
    0x80: "hold_press",
    0x81: "hold_release",
}

_BINARY_STATES: Final[dict[str, tuple[EventKind, str, str]]] = {
    _MOTION: (EventKind.MOTION, "detected", "clear"),
    _CONTACT: (EventKind.CONTACT, "open", "closed"),
    _LEAK: (EventKind.WATER_LEAK, "wet", "dry"),
}

_NONCE_UUID: Final = b"\xd2\xfc"


def decode(
    address: str,
    service_data: Mapping[str, bytes],
    *,
    bindkey: bytes | None = None,
    state: ReplayState | None = None,
    ts: float = 0.0,
) -> Decoded | Rejected | None:
    """Decodes the BTHome service data in one advertisement, or None if it carries none."""
    data = service_data.get(SERVICE_UUID)
    if data is None:
        return None
    if len(data) < 2:
        return Rejected(FMT, Reason.TRUNCATED)
    if len(data) > MAX_AD_PAYLOAD:
        return Rejected(FMT, Reason.OVERSIZED)
    info = data[0]
    if info >> 5 != 2:
        return Rejected(FMT, Reason.UNSUPPORTED)
    start = 1
    mac: bytes | None
    if info & 0x02:
        if len(data) < 8:
            return Rejected(FMT, Reason.TRUNCATED)
        mac = data[6:0:-1]
        start = 7
    else:
        mac = None
    if info & 0x01:
        if bindkey is None:
            return Rejected(FMT, Reason.NO_KEY)
        if mac is None:
            mac = mac_bytes(address)
            if mac is None:
                return Rejected(FMT, Reason.BAD_ADDRESS)
        if len(data) - start < 10:  # at least a 2-byte object, the counter and the MIC
            return Rejected(FMT, Reason.TRUNCATED)
        counter_bytes = data[-8:-4]
        counter = int.from_bytes(counter_bytes, "little")
        if state is not None and (why := state.check_counter(FMT, address, counter)) is not None:
            return Rejected(FMT, why)
        nonce = mac + _NONCE_UUID + data[0:1] + counter_bytes
        try:
            payload = ccm(bindkey).decrypt(nonce, data[start:-8] + data[-4:], None)
        except (InvalidTag, ValueError):
            return Rejected(FMT, Reason.AUTH_FAILED)
        if state is not None:
            state.commit_counter(FMT, address, counter)
    else:
        if bindkey is not None:
            # A device we hold a key for must not be spoofed by someone sending its values in the clear.
            return Rejected(FMT, Reason.DOWNGRADE)
        payload = data[start:]
    return _objects(address, payload, sleepy=bool(info & 0x04), state=state, ts=ts)


def _channels(readings: list[Reading]) -> list[Reading]:
    """BTHome repeats an object for a second probe of one quantity (two thermometers): number them ``1``, ``2``,
    in order, as bthome-ble's ``_1``/``_2`` postfixes do; a quantity reported once keeps no channel."""
    counts = collections.Counter(r.quantity for r in readings)
    if all(n == 1 for n in counts.values()):
        return readings
    seen: collections.Counter[Quantity] = collections.Counter()
    out = []
    for r in readings:
        if counts[r.quantity] > 1:
            seen[r.quantity] += 1
            r = msgspec.structs.replace(r, channel=str(seen[r.quantity]))
        out.append(r)
    return out


def _objects(address: str, payload: bytes, *, sleepy: bool, state: ReplayState | None, ts: float) -> Decoded | Rejected:
    did = device_id("ble", address)
    readings: list[Reading] = []
    events: list[Event] = []
    binaries: dict[str, int] = {}
    note: Reason | None = None
    packet_id: int | None = None
    pos = 0
    end = len(payload)
    while pos < end:
        spec = OBJECTS.get(payload[pos])
        if spec is None:
            note = Reason.UNKNOWN_OBJECT
            break
        length, signed, factor, what = spec
        start = pos + 1
        if length < 0:
            if start >= end:
                note = Reason.TRUNCATED
                break
            length = payload[start] if length == _VARIABLE else 1 + (payload[start] & 0x1F)
            start += 1
        pos = start + length
        if pos > end:
            note = Reason.TRUNCATED
            break
        if what is None:
            continue
        raw = int.from_bytes(payload[start:pos], "little", signed=signed)
        if isinstance(what, Quantity):
            readings.append(Reading(did, what, round(raw * factor, _DECIMALS[factor]), ts))
        elif what == _PACKET_ID:
            if state is not None and (why := state.check_packet_id(FMT, address, raw, ts)) is not None:
                return Rejected(FMT, why)
            packet_id = raw
        elif what == _BUTTON:
            if (name := BUTTON_EVENTS.get(raw)) is not None:
                events.append(Event(device_id=did, kind=EventKind.BUTTON, state=name, ts=ts))
        elif what in _BINARY_STATES:
            event_kind, on, off = _BINARY_STATES[what]
            events.append(Event(device_id=did, kind=event_kind, state=on if raw else off, ts=ts))
        else:
            binaries[what] = raw
    kind = DeviceKind.SENSOR
    if _SMOKE in binaries:
        kind = DeviceKind.SMOKE_DETECTOR
        events.insert(0, Event(device_id=did, kind=EventKind.SMOKE, state=_smoke_state(binaries), ts=ts))
    if note is not None and not readings and not events:
        return Rejected(FMT, note)
    readings = _channels(readings)
    if packet_id is not None and state is not None:
        state.commit_packet_id(FMT, address, packet_id, ts)
    return Decoded(
        fmt=FMT,
        device_id=did,
        model=MODEL,
        kind=kind,
        readings=tuple(readings),
        events=tuple(events),
        sleepy=sleepy,
        note=note,
    )


def _smoke_state(binaries: dict[str, int]) -> SmokeState:
    # One state per packet, most urgent first: smoke outranks the maintenance states.
    if binaries[_SMOKE]:
        return SmokeState.SMOKE
    if binaries.get(_TAMPER):
        return SmokeState.TAMPER
    if binaries.get(_BATTERY_LOW):
        return SmokeState.BATTERY_LOW
    return SmokeState.CLEAR
