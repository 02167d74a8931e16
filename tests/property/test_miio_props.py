"""Properties of the miIO codec and decoders: bad input never raises; encode→decode round-trips; python-miio agrees."""

from __future__ import annotations

import datetime
import warnings
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.miio import packet, values
from gateway.model import SmokeState
from kotihub_tools.simulators.miio import MiioSimulator, SimulatedGateway

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from miio.protocol import Message

tokens = st.binary(min_size=16, max_size=16)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@given(data=st.binary(max_size=200), token=st.binary(max_size=20))
def test_random_bytes_never_raise(data: bytes, token: bytes) -> None:
    pkt, reason = packet.decode(data, token)
    assert (pkt is None) == bool(reason)
    obj, _, reason = packet.decode_json(data, token)
    assert (obj is None) == bool(reason)
    header, reason = packet.decode_hello_reply(data)
    assert (header is None) == bool(reason)


@given(body=st.binary(min_size=16, max_size=160), token=tokens, length_ok=st.booleans())
def test_random_bytes_behind_a_valid_header_never_raise(body: bytes, token: bytes, length_ok: bool) -> None:
    length = 32 + len(body) if length_ok else 32
    data = bytes.fromhex("2131") + length.to_bytes(2, "big") + bytes(12) + body
    pkt, reason = packet.decode(data, token)
    assert pkt is None
    assert reason


@given(payload=st.binary(max_size=300), token=tokens, did=u32, stamp=u32, unknown=u32)
def test_encode_decode_round_trips(payload: bytes, token: bytes, did: int, stamp: int, unknown: int) -> None:
    data = packet.encode(payload, token=token, device_id=did, stamp=stamp, unknown=unknown)
    assert len(data) % 16 == 0
    assert len(data) > 32
    pkt, reason = packet.decode(data, token)
    assert reason == ""
    assert pkt == packet.Packet(device_id=did, stamp=stamp, unknown=unknown, payload=payload.rstrip(b"\x00"))


@given(obj=json_objects, token=tokens, other=tokens, did=u32, stamp=u32)
def test_json_round_trips_and_another_token_is_refused(
    obj: dict[str, Any], token: bytes, other: bytes, did: int, stamp: int
) -> None:
    data = packet.encode_json(obj, token=token, device_id=did, stamp=stamp)
    decoded, pkt, reason = packet.decode_json(data, token)
    assert decoded == obj
    assert reason == ""
    assert pkt is not None
    if other != token:
        assert packet.decode(data, other)[0] is None


@settings(max_examples=50)
@given(obj=json_objects, token=tokens, did=u32, stamp=st.integers(0, 2**31 - 1))
def test_reference_library_builds_the_same_bytes(obj: dict[str, Any], token: bytes, did: int, stamp: int) -> None:
    ts = datetime.datetime.fromtimestamp(stamp, datetime.UTC).replace(tzinfo=None)
    header = {"length": 0, "unknown": 0, "device_id": did.to_bytes(4, "big"), "ts": ts}
    theirs = bytes(Message.build({"data": {"value": obj}, "header": {"value": header}, "checksum": 0}, token=token))
    assert packet.encode_json(obj, token=token, device_id=did, stamp=stamp) == theirs


@given(flip=st.integers(min_value=0, max_value=10_000), obj=json_objects, token=tokens)
def test_any_single_bit_flip_is_refused(flip: int, obj: dict[str, Any], token: bytes) -> None:
    data = bytearray(packet.encode_json(obj, token=token, device_id=7, stamp=9))
    # Bytes 2..3 are the length: flipping them is a length error; every other bit is covered by the checksum.
    bit = flip % (len(data) * 8)
    data[bit // 8] ^= 1 << (bit % 8)
    assert packet.decode(bytes(data), token)[0] is None


@example(code="²")  # str.isdigit() is true for it, int() refuses it
@example(code="٣")
@given(code=json_values | st.floats(allow_nan=True))
def test_smoke_codes_never_raise_and_only_1_is_smoke(code: Any) -> None:
    state, reason = values.smoke_state(code)
    assert (state is None) == bool(reason)
    if state is SmokeState.SMOKE:
        assert code == 1 or (isinstance(code, str) and int(code.strip()) == 1)


@given(reply=json_values)
def test_smoke_replies_never_raise(reply: Any) -> None:
    result, reason = values.smoke_reply(reply)
    assert (result is None) == bool(reason)


@given(status=st.dictionaries(st.sampled_from(values.HT_PROPERTIES), json_values | st.floats()))
def test_weather_status_never_raises_and_stays_in_range(status: dict[str, Any]) -> None:
    readings, reasons = values.ht_readings("d", status, 0.0)
    assert len(readings) + len(reasons) == sum(1 for v in status.values() if v is not None)
    for r in readings:
        assert -40 <= r.value <= 1100


SIM_TOKEN = bytes(range(16))
methods = st.sampled_from(
    ["miIO.info", "get_device_prop", "get_device_prop_exp", "get_battery", "get_illumination", "x"]
) | st.text(max_size=10)


@given(data=st.binary(max_size=120))
def test_simulator_ignores_garbage(data: bytes) -> None:
    sim = MiioSimulator(SimulatedGateway.demo(SIM_TOKEN))
    reply = sim._answer(data)
    if data == packet.HELLO:
        assert reply is not None
    else:
        assert reply is None
        assert sim.malformed == 1


@given(method=methods, params=json_values, rid=st.integers(0, 9999))
def test_simulator_answers_every_authentic_request(method: str, params: Any, rid: int) -> None:
    gw = SimulatedGateway.demo(SIM_TOKEN)
    sim = MiioSimulator(gw)
    request = packet.encode_json({"id": rid, "method": method, "params": params}, token=SIM_TOKEN, device_id=1, stamp=2)
    reply = sim._answer(request)
    assert reply is not None
    obj, pkt, reason = packet.decode_json(reply, SIM_TOKEN)
    assert reason == ""
    assert obj is not None
    assert pkt is not None
    assert pkt.device_id == gw.did
    assert obj["id"] == rid
    assert ("result" in obj) != ("error" in obj)
