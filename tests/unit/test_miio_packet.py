"""The miIO packet codec against golden packets and against python-miio 0.5.12's own ``miio.protocol.Message``."""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from drivers.miio import packet

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from miio.protocol import Message

VECTORS = Path(__file__).parents[1] / "vectors" / "miio"


def _load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())
    assert data, f"{name} is empty"
    assert all(v.get("source") for v in data), f"{name}: every vector needs a source"
    return data


PACKETS = _load("reference_packets.json") + _load("protocol_reference.json")
HELLOS = _load("hello.json")


def _miio_build(token: bytes, did: int, stamp: int, payload: Any) -> bytes:
    ts = datetime.datetime.fromtimestamp(stamp, datetime.UTC).replace(tzinfo=None)
    header = {"length": 0, "unknown": 0, "device_id": did.to_bytes(4, "big"), "ts": ts}
    return bytes(Message.build({"data": {"value": payload}, "header": {"value": header}, "checksum": 0}, token=token))


@pytest.mark.parametrize("vec", PACKETS, ids=[v["name"] for v in PACKETS])
def test_encode_matches_golden_packet(vec: dict[str, Any]) -> None:
    built = packet.encode_json(
        vec["payload"], token=bytes.fromhex(vec["token"]), device_id=vec["device_id"], stamp=vec["stamp"]
    )
    assert built.hex() == vec["packet"]


@pytest.mark.parametrize("vec", PACKETS, ids=[v["name"] for v in PACKETS])
def test_decode_golden_packet(vec: dict[str, Any]) -> None:
    obj, pkt, reason = packet.decode_json(bytes.fromhex(vec["packet"]), bytes.fromhex(vec["token"]))
    assert reason == ""
    assert obj == vec["payload"]
    assert pkt is not None
    assert (pkt.device_id, pkt.stamp, pkt.unknown) == (vec["device_id"], vec["stamp"], 0)


@pytest.mark.parametrize("vec", PACKETS, ids=[v["name"] for v in PACKETS])
def test_reference_library_agrees_byte_for_byte(vec: dict[str, Any]) -> None:
    token = bytes.fromhex(vec["token"])
    ours = packet.encode_json(vec["payload"], token=token, device_id=vec["device_id"], stamp=vec["stamp"])
    assert ours == _miio_build(token, vec["device_id"], vec["stamp"], vec["payload"])
    parsed = Message.parse(ours, token=token)
    assert parsed.data.value == vec["payload"]
    assert int.from_bytes(parsed.header.value.device_id, "big") == vec["device_id"]


def test_key_and_iv_from_protocols_md() -> None:
    # protocols.md §3.1: key = MD5(token), iv = MD5(key + token).
    key, iv = packet.key_iv(bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert key.hex() == "6e8311168ee16d6aa1aa48c64145003c"
    assert iv.hex() == "6f434fa9acd75da73e5fb999f641cda2"


def test_round_trip_keeps_every_field() -> None:
    token = bytes(range(16))
    data = packet.encode(b'{"id": 3}\x00', token=token, device_id=0xFFFFFFFF, stamp=0, unknown=0)
    pkt, reason = packet.decode(data, token)
    assert reason == ""
    assert pkt == packet.Packet(device_id=0xFFFFFFFF, stamp=0, unknown=0, payload=b'{"id": 3}')


def test_tampered_checksum_is_refused() -> None:
    vec = PACKETS[0]
    data = bytearray.fromhex(vec["packet"])
    data[20] ^= 0x01
    pkt, reason = packet.decode(bytes(data), bytes.fromhex(vec["token"]))
    assert pkt is None
    assert "checksum" in reason


def test_tampered_ciphertext_is_refused() -> None:
    vec = PACKETS[1]
    data = bytearray.fromhex(vec["packet"])
    data[-1] ^= 0x80
    pkt, reason = packet.decode(bytes(data), bytes.fromhex(vec["token"]))
    assert pkt is None
    assert "checksum" in reason


def test_tampered_header_is_refused() -> None:
    vec = PACKETS[1]
    data = bytearray.fromhex(vec["packet"])
    data[11] ^= 0x01  # the device id is covered by the checksum too
    assert packet.decode(bytes(data), bytes.fromhex(vec["token"]))[0] is None


def test_wrong_token_is_refused() -> None:
    vec = PACKETS[0]
    wrong = bytes.fromhex("ff" * 16)
    obj, pkt, reason = packet.decode_json(bytes.fromhex(vec["packet"]), wrong)
    assert obj is None
    assert pkt is None
    assert "checksum" in reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than a header"),
        (b"\x21\x31" + b"\x00" * 10, "shorter than a header"),
        (bytes.fromhex("2132") + bytes(30), "bad magic"),
        (bytes.fromhex("21310040") + bytes(28), "length field does not match the datagram"),
        (bytes.fromhex("21310020") + bytes(28), "no payload"),
    ],
)
def test_malformed_packets_name_their_reason(data: bytes, reason: str) -> None:
    assert packet.decode(data, bytes(16)) == (None, reason)


def test_truncated_packet_is_refused() -> None:
    data = bytes.fromhex(PACKETS[0]["packet"])[:-5]
    pkt, reason = packet.decode(data, bytes.fromhex(PACKETS[0]["token"]))
    assert pkt is None
    assert reason == "length field does not match the datagram"


def test_bad_token_length_is_refused_not_raised() -> None:
    assert packet.decode(bytes.fromhex(PACKETS[0]["packet"]), b"short") == (None, "token is not 16 bytes")


def test_authentic_but_not_json_payload() -> None:
    token = bytes(16)
    data = packet.encode(b"\xff\xfe not json", token=token, device_id=1, stamp=2)
    obj, pkt, reason = packet.decode_json(data, token)
    assert obj is None
    assert pkt is not None
    assert reason == "payload is not JSON"
    data = packet.encode(b"[1, 2]", token=token, device_id=1, stamp=2)
    assert packet.decode_json(data, token)[2] == "payload is not a JSON object"


def test_encode_rejects_a_short_token() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        packet.encode(b"{}", token=b"x", device_id=1, stamp=1)


@pytest.mark.parametrize("vec", HELLOS, ids=[v["name"] for v in HELLOS])
def test_hello_vectors(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["packet"])
    if vec["name"] == "hello_request":
        assert packet.is_hello(data)
        assert data == packet.HELLO
        assert packet.decode_hello_reply(data) == (None, "a hello request, not a reply")
        return
    assert not packet.is_hello(data)
    header, reason = packet.decode_hello_reply(data)
    assert reason == ""
    assert header is not None
    assert (header.device_id, header.stamp) == (vec["device_id"], vec["stamp"])
    assert (header.checksum not in (b"\xff" * 16, b"\x00" * 16)) is vec["token_hint"]
    if not vec["token_hint"]:
        assert packet.encode_hello_reply(device_id=vec["device_id"], stamp=vec["stamp"]) == data
    # python-miio reads the same header from it.
    parsed = Message.parse(data)
    assert int.from_bytes(parsed.header.value.device_id, "big") == vec["device_id"]


def test_hello_reply_with_payload_is_not_a_hello_reply() -> None:
    assert packet.decode_hello_reply(bytes.fromhex(PACKETS[0]["packet"])) == (None, "not a hello reply (has a payload)")
