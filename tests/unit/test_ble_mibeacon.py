"""MiBeacon rules: smoke semantics (a fault is never smoke), replay protection, downgrade, header variants."""

from __future__ import annotations

import pytest

from drivers.ble import mibeacon
from drivers.ble.common import Decoded, Reason, Rejected, ReplayState
from gateway.model import EventKind, SmokeState
from tests.support import ble_encode
from tests.support.ble_encode import mi_object

H = bytes.fromhex
KEY = H("5b51a7c91cde6707c9ef18dfda143a58")
MAC = H("54EF44E39CBC")
ADDR = "54:EF:44:E3:9C:BC"
SMOKE_PID = 0x0997


def _smoke_beacon(objects: bytes, frame: int = 1, ext: int = 0) -> bytes:
    return ble_encode.mibeacon(objects, product_id=SMOKE_PID, frame_counter=frame, mac=MAC, key=KEY, ext_counter=ext)


def _decode(sd: bytes, *, key: bytes | None = KEY, state: ReplayState | None = None, addr: str = ADDR):  # type: ignore[no-untyped-def]
    return mibeacon.decode(addr, {mibeacon.SERVICE_UUID: sd}, bindkey=key, state=state)


@pytest.mark.parametrize(
    ("object_id", "value", "state"),
    [
        (0x1015, 0, SmokeState.CLEAR),
        (0x1015, 1, SmokeState.SMOKE),
        (0x1015, 2, SmokeState.FAULT),  # xiaomi-ble reports smoke here; a fault is never smoke
        (0x000D, 0, SmokeState.CLEAR),
        (0x000D, 1, SmokeState.SMOKE),
        (0x000D, 2, SmokeState.FAULT),
        (0x000D, 3, SmokeState.TEST),  # equipment self-check
        (0x000D, 4, SmokeState.TEST),  # simulated alarm
    ],
)
def test_smoke_semantics(object_id: int, value: int, state: SmokeState) -> None:
    decoded = _decode(_smoke_beacon(mi_object(object_id, bytes([value]))))
    assert isinstance(decoded, Decoded)
    assert [(e.kind, e.state) for e in decoded.events] == [(EventKind.SMOKE, state)]


def test_undefined_smoke_value_yields_nothing() -> None:
    assert _decode(_smoke_beacon(mi_object(0x1015, b"\x07"))) == Rejected("mibeacon", Reason.BAD_VALUE)


def test_test_button_is_a_button_event_not_an_alarm() -> None:
    decoded = _decode(_smoke_beacon(mi_object(0x1001, b"\x00\x00\x00")))
    assert isinstance(decoded, Decoded)
    (event,) = decoded.events
    assert (event.kind, event.state, event.attrs) == (EventKind.BUTTON, "press", {"button": "test"})


def test_counter_replay_and_duplicate() -> None:
    state = ReplayState()
    old = _smoke_beacon(mi_object(0x1015, b"\x01"), frame=200, ext=1)
    new = _smoke_beacon(mi_object(0x1015, b"\x00"), frame=201, ext=1)
    assert isinstance(_decode(old, state=state), Decoded)
    assert _decode(old, state=state) == Rejected("mibeacon", Reason.DUPLICATE)
    assert isinstance(_decode(new, state=state), Decoded)
    assert _decode(old, state=state) == Rejected("mibeacon", Reason.REPLAY)
    # The 8-bit frame counter wraps into the extended counter: still newer.
    wrapped = _smoke_beacon(mi_object(0x1015, b"\x00"), frame=0, ext=2)
    assert isinstance(_decode(wrapped, state=state), Decoded)


def test_wrong_key_and_no_key() -> None:
    sd = _smoke_beacon(mi_object(0x1015, b"\x01"))
    assert _decode(sd, key=H("00" * 16)) == Rejected("mibeacon", Reason.AUTH_FAILED)
    assert _decode(sd, key=None) == Rejected("mibeacon", Reason.NO_KEY)


def test_tampered_ciphertext_fails_authentication() -> None:
    sd = bytearray(_smoke_beacon(mi_object(0x1015, b"\x00")))
    sd[11] ^= 0x01
    assert _decode(bytes(sd)) == Rejected("mibeacon", Reason.AUTH_FAILED)


def test_plaintext_smoke_from_a_keyed_device_is_refused() -> None:
    sd = ble_encode.mibeacon(mi_object(0x1015, b"\x01"), product_id=SMOKE_PID, frame_counter=9, mac=MAC)
    assert _decode(sd) == Rejected("mibeacon", Reason.DOWNGRADE)
    decoded = _decode(sd, key=None)
    assert isinstance(decoded, Decoded)
    assert decoded.events[0].state == SmokeState.SMOKE


def test_legacy_encryption_and_mesh_are_unsupported() -> None:
    legacy = ble_encode.mibeacon(mi_object(0x1015, b"\x01"), product_id=SMOKE_PID, frame_counter=1, mac=MAC, version=3)
    legacy = bytes([legacy[0] | 0x08]) + legacy[1:] + b"\x00" * 7
    assert _decode(legacy) == Rejected("mibeacon", Reason.UNSUPPORTED)
    mesh = bytes([0xC0, 0x50]) + H("97090112")
    assert _decode(mesh) == Rejected("mibeacon", Reason.UNSUPPORTED)


def test_capability_byte_and_io_are_skipped() -> None:
    plain = ble_encode.mibeacon(b"", product_id=0x055B, frame_counter=1, mac=H("A4C138B4944C"), version=5)
    fc = int.from_bytes(plain[0:2], "little") | 0x20
    obj = mi_object(0x1004, H("1001"))
    with_cap = fc.to_bytes(2, "little") + plain[2:] + b"\x08" + obj
    with_io = fc.to_bytes(2, "little") + plain[2:] + b"\x28\x01\x00" + obj
    for sd in (with_cap, with_io):
        decoded = _decode(sd, key=None, addr="A4:C1:38:B4:94:4C")
        assert isinstance(decoded, Decoded)
        assert [r.value for r in decoded.readings] == [27.2]


def test_beacon_without_objects_is_benign() -> None:
    sd = ble_encode.mibeacon(b"", product_id=0x055B, frame_counter=1, mac=H("A4C138B4944C"))
    sd = bytes([sd[0] & ~0x40 & 0xFF]) + sd[1:]
    assert _decode(sd, key=None, addr="A4:C1:38:B4:94:4C") == Rejected("mibeacon", Reason.NO_OBJECT)


def test_known_object_with_wrong_length_is_noted() -> None:
    objs = mi_object(0x1004, H("1001")) + mi_object(0x1006, H("01"))
    sd = ble_encode.mibeacon(objs, product_id=0x055B, frame_counter=1, mac=H("A4C138B4944C"))
    decoded = _decode(sd, key=None, addr="A4:C1:38:B4:94:4C")
    assert isinstance(decoded, Decoded)
    assert decoded.note is Reason.BAD_VALUE
    assert [r.value for r in decoded.readings] == [27.2]
