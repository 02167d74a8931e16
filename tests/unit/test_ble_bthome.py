"""BTHome rules beyond the golden values: replay and duplicate handling, downgrade, smoke states, partial packets."""

from __future__ import annotations

from drivers.ble import bthome
from drivers.ble.common import Decoded, Reason, Rejected, ReplayState
from gateway.model import EventKind, Quantity, SmokeState
from tests.support import ble_encode

H = bytes.fromhex
KEY = H("231d39c1d7cc1ab1aee224cd096db932")
MAC = H("5448E68F80A5")
ADDR = "54:48:E6:8F:80:A5"


def _decode(payload: bytes, *, key: bytes | None = None, state: ReplayState | None = None, ts: float = 0.0):  # type: ignore[no-untyped-def]
    return bthome.decode(ADDR, {bthome.SERVICE_UUID: payload}, bindkey=key, state=state, ts=ts)


def test_other_service_data_is_not_ours() -> None:
    assert bthome.decode(ADDR, {"0000181a-0000-1000-8000-00805f9b34fb": b"\x40\x02\xca\x09"}) is None


def test_encryption_counter_replay_duplicate_and_restart() -> None:
    state = ReplayState()
    first = ble_encode.bthome(H("02ca09"), mac=MAC, key=KEY, counter=5000)
    later = ble_encode.bthome(H("02cb09"), mac=MAC, key=KEY, counter=5001)
    assert isinstance(_decode(first, key=KEY, state=state), Decoded)
    assert _decode(first, key=KEY, state=state) == Rejected("bthome", Reason.DUPLICATE)
    assert isinstance(_decode(later, key=KEY, state=state), Decoded)
    assert _decode(first, key=KEY, state=state) == Rejected("bthome", Reason.REPLAY)
    restarted = ble_encode.bthome(H("02cc09"), mac=MAC, key=KEY, counter=3)
    decoded = _decode(restarted, key=KEY, state=state)
    assert isinstance(decoded, Decoded)
    assert decoded.readings[0].value == 25.08


def test_forged_packet_does_not_advance_the_counter() -> None:
    state = ReplayState()
    forged = ble_encode.bthome(H("02ca09"), mac=MAC, key=H("00" * 16), counter=0xFFFFFFFF)
    assert _decode(forged, key=KEY, state=state) == Rejected("bthome", Reason.AUTH_FAILED)
    genuine = ble_encode.bthome(H("02ca09"), mac=MAC, key=KEY, counter=200)
    assert isinstance(_decode(genuine, key=KEY, state=state), Decoded)


def test_nonce_uses_the_included_mac() -> None:
    sd = ble_encode.bthome(H("2901"), mac=H("A4C1388D18B2"), include_mac=True, key=KEY, counter=7)
    decoded = _decode(sd, key=KEY)
    assert isinstance(decoded, Decoded)
    assert [(e.kind, e.state) for e in decoded.events] == [(EventKind.SMOKE, SmokeState.SMOKE)]


def test_plaintext_from_a_keyed_device_is_a_downgrade() -> None:
    assert _decode(H("402901"), key=KEY) == Rejected("bthome", Reason.DOWNGRADE)


def test_packet_id_repeats_within_four_seconds_are_duplicates() -> None:
    state = ReplayState()
    assert isinstance(_decode(H("4000090229"), state=state, ts=100.0), Rejected)  # truncated temperature, no commit
    assert isinstance(_decode(H("400009025d09"), state=state, ts=100.0), Decoded)
    assert _decode(H("400009025d09"), state=state, ts=101.0) == Rejected("bthome", Reason.DUPLICATE)
    assert _decode(H("400008025d09"), state=state, ts=102.0) == Rejected("bthome", Reason.DUPLICATE)
    assert isinstance(_decode(H("40000a025d09"), state=state, ts=103.0), Decoded)
    # The same id again after more than 4 s is a new measurement (the device wrapped or restarted).
    assert isinstance(_decode(H("40000a025d09"), state=state, ts=108.0), Decoded)


def test_packet_id_rolls_over() -> None:
    state = ReplayState()
    assert isinstance(_decode(H("4000ff025d09"), state=state, ts=0.0), Decoded)
    assert isinstance(_decode(H("400000025d09"), state=state, ts=1.0), Decoded)


def test_smoke_state_priority() -> None:
    def smoke(objects: str) -> str:
        decoded = _decode(H("40" + objects))
        assert isinstance(decoded, Decoded)
        (event,) = [e for e in decoded.events if e.kind is EventKind.SMOKE]
        return event.state

    assert smoke("2901") == SmokeState.SMOKE
    assert smoke("29012b01") == SmokeState.SMOKE
    assert smoke("29002b01") == SmokeState.TAMPER
    assert smoke("15012900") == SmokeState.BATTERY_LOW
    assert smoke("2900") == SmokeState.CLEAR


def test_unknown_object_after_known_ones_keeps_them_and_notes_it() -> None:
    decoded = _decode(H("4002ca09fe0102"))
    assert isinstance(decoded, Decoded)
    assert decoded.note is Reason.UNKNOWN_OBJECT
    assert [(r.quantity, r.value) for r in decoded.readings] == [(Quantity.TEMPERATURE, 25.06)]


def test_variable_length_objects_are_skipped() -> None:
    # text "hi" (0x53) and raw 3 bytes (0x54), then humidity
    decoded = _decode(H("40" + "53026869" + "5403010203" + "03bf13"))
    assert isinstance(decoded, Decoded)
    assert [(r.quantity, r.value) for r in decoded.readings] == [(Quantity.HUMIDITY, 50.55)]
    # a command (0x3B): opcode plus the argument count in the length byte's low 5 bits
    decoded = _decode(H("40" + "3b02aabbcc" + "03bf13"))
    assert isinstance(decoded, Decoded)
    assert [(r.quantity, r.value) for r in decoded.readings] == [(Quantity.HUMIDITY, 50.55)]


def test_rounding_matches_bthome_ble() -> None:
    decoded = _decode(H("40" + "58ff" + "0c7b0b"))  # sint8 × 0.35 and voltage × 0.001
    assert isinstance(decoded, Decoded)
    assert [r.value for r in decoded.readings] == [-0.3, 2.939]


def test_oversized_and_short() -> None:
    assert _decode(b"\x40" + b"\x01\x50" * 200) == Rejected("bthome", Reason.OVERSIZED)
    assert _decode(b"\x40") == Rejected("bthome", Reason.TRUNCATED)
    assert _decode(b"\x41" + b"\x00" * 8, key=KEY) == Rejected("bthome", Reason.TRUNCATED)


def test_encrypted_needs_a_mac_address() -> None:
    sd = ble_encode.bthome(H("02ca09"), mac=MAC, key=KEY, counter=1)
    assert bthome.decode("7d1f9a0c-uuid-on-macos", {bthome.SERVICE_UUID: sd}, bindkey=KEY) == Rejected(
        "bthome", Reason.BAD_ADDRESS
    )
