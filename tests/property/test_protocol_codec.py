"""Property tests for the wire codec: what the hub encodes, the register decodes to the same values; anything
else is refused with a ProtocolError, never another exception."""

from __future__ import annotations

import re
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync import protocol as p
from cloud_sync.register.blobstore import FileBlobStore

ids = st.text(alphabet=string.ascii_letters + string.digits + ":_-", min_size=1, max_size=40)
ts = st.floats(min_value=0, max_value=2.0**40, allow_nan=False)
finite = st.floats(min_value=-1e300, max_value=1e300)
scalars = st.one_of(st.text(max_size=20), finite, st.integers(-(2**63), 2**63 - 1), st.booleans())


def seqs(max_size: int = 50) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, 2**62), max_size=max_size, unique=True).map(sorted)


readings = st.fixed_dictionaries(
    {
        "device_id": ids,
        "quantity": st.sampled_from(["temperature", "humidity", "illuminance"]),
        "value": finite,
        "ts": ts,
    },
    optional={"channel": st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=16)},
)
events = st.fixed_dictionaries(
    {
        "device_id": ids,
        "kind": st.sampled_from(["smoke", "motion"]),
        "state": st.sampled_from(["clear", "smoke", "fault", "on"]),
        "ts": ts,
        "attrs": st.dictionaries(st.text(max_size=10), scalars, max_size=5),
    }
)
clip_records = st.fixed_dictionaries(
    {
        "clip_id": st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=40).map(lambda t: f"c{t}"),
        "device_id": ids,
        "started": ts,
        "duration_s": st.floats(0, 86_400),
        "size": st.integers(0, p.MAX_CLIP_SIZE_BYTES),
        "sha256": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        "reason": st.sampled_from(["motion", "alarm", "manual"]),
    }
)
diagnostics = st.dictionaries(st.text(max_size=10), scalars, max_size=10)
BODIES = {"readings": readings, "alarm": events, "events": events, "clips": clip_records, "diagnostics": diagnostics}


@st.composite
def batches(draw: st.DrawFn) -> p.IngestBatch:
    lane = draw(st.sampled_from(p.LANES))
    items = [p.Item(seq=s, ts=draw(ts), body=draw(BODIES[lane])) for s in draw(seqs())]
    return p.IngestBatch(hub_id=draw(ids), lane=lane, items=items)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(batches())
def test_round_trip(batch: p.IngestBatch) -> None:
    decoded = p.decode_batch(batch.lane, p.decompress_bounded(p.encode_batch(batch)))
    assert decoded.hub_id == batch.hub_id
    assert decoded.lane == batch.lane
    assert [i.seq for i in decoded.items] == [i.seq for i in batch.items]
    assert [i.ts for i in decoded.items] == [i.ts for i in batch.items]
    as_builtins: list[Any] = msgspec.to_builtins([i.body for i in decoded.items])
    assert as_builtins == [i.body for i in batch.items]


@given(batches(), st.sampled_from(p.LANES))
def test_wrong_lane_is_refused(batch: p.IngestBatch, lane: str) -> None:
    payload = p.decompress_bounded(p.encode_batch(batch))
    if lane == batch.lane:
        assert p.decode_batch(lane, payload).lane == lane
    else:
        with pytest.raises(p.ProtocolError) as err:
            p.decode_batch(lane, payload)
        assert err.value.status == 422


def outcome(call: Callable[[], object]) -> object:
    """The result of ``call``, or the ProtocolError it raised (any other exception fails the test)."""
    try:
        return call()
    except p.ProtocolError as exc:
        return exc


@given(st.binary(max_size=2000), st.sampled_from(p.LANES))
def test_garbage_only_raises_protocol_error(data: bytes, lane: str) -> None:
    for result in (outcome(lambda: p.decompress_bounded(data)), outcome(lambda: p.decode_batch(lane, data))):
        if isinstance(result, p.ProtocolError):
            assert result.status in (400, 413, 422)


@given(st.binary(max_size=5000), st.integers(0, 6000))
def test_decompress_never_exceeds_limit(data: bytes, limit: int) -> None:
    frame = zstandard.ZstdCompressor().compress(data)
    if len(data) > limit:
        with pytest.raises(p.ProtocolError) as err:
            p.decompress_bounded(frame, limit)
        assert err.value.status == 413
    else:
        assert p.decompress_bounded(frame, limit) == data


@given(seqs(20).filter(lambda s: len(s) >= 2), st.data())
def test_non_ascending_seqs_refused(sorted_seqs: list[int], data: st.DataObject) -> None:
    i = data.draw(st.integers(1, len(sorted_seqs) - 1))
    shuffled = list(sorted_seqs)
    shuffled[i] = shuffled[i - 1]  # a repeat breaks strict ascent
    items = [p.Item(seq=s, ts=1.0, body={"a": 1}) for s in shuffled]
    batch = p.IngestBatch(hub_id="hub_1", lane="diagnostics", items=items)
    with pytest.raises(p.ProtocolError, match=re.escape(f"items[{i}].seq")):
        p.decode_batch("diagnostics", p.decompress_bounded(p.encode_batch(batch)))


@given(
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64),
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64),
)
def test_hub_uri_round_trip(household: str, hub: str) -> None:
    assert p.parse_hub_uri(p.hub_uri(household, hub)) == (household, hub)
    assert p.parse_hub_uri(p.hub_uri(household, hub) + ":x") is None


@given(st.sampled_from([float("nan"), float("inf"), float("-inf")]), st.sampled_from(["value", "ts"]))
def test_non_finite_numbers_refused(bad: float, field: str) -> None:
    body = {"device_id": "mqtt:a", "quantity": "temperature", "value": 1.0, "ts": 1.0, field: bad}
    batch = p.IngestBatch(hub_id="hub_1", lane="readings", items=[p.Item(seq=0, ts=1.0, body=body)])
    with pytest.raises(p.ProtocolError, match=re.escape(f"$.items[0].body.{field}")) as err:
        p.decode_batch("readings", p.decompress_bounded(p.encode_batch(batch)))
    assert err.value.status == 422


@given(
    st.builds(
        lambda a, bad, b: a + bad + b,
        st.text(max_size=10),
        st.sampled_from(["\x00", "\n", "\t", "\r", "\x1b", "\x7f"]),
        st.text(max_size=10),
    )
)
def test_device_ids_with_control_characters_refused(device_id: str) -> None:
    body = {"device_id": device_id, "quantity": "temperature", "value": 1.0, "ts": 1.0}
    batch = p.IngestBatch(hub_id="hub_1", lane="readings", items=[p.Item(seq=0, ts=1.0, body=body)])
    with pytest.raises(p.ProtocolError, match="device_id"):
        p.decode_batch("readings", p.decompress_bounded(p.encode_batch(batch)))


@given(st.text(alphabet="abZ09_.-/\n ", max_size=12))
def test_clip_ids_the_protocol_accepts_are_safe_blob_keys(clip_id: str) -> None:
    record = {
        "clip_id": clip_id,
        "device_id": "cam:1",
        "started": 1.0,
        "duration_s": 1.0,
        "size": 1,
        "sha256": "0" * 64,
    }
    try:
        msgspec.convert(record, p.ClipRecord)
    except msgspec.ValidationError:
        return
    with tempfile.TemporaryDirectory() as d:
        path = FileBlobStore(Path(d))._path("hh_1", clip_id)
        assert path.parent == Path(d) / "hh_1"
        assert path.name == f"{clip_id}.age"


@given(
    st.sampled_from(
        [
            ("device_id", ""),
            ("device_id", "x" * 129),
            ("device_id", "mqtt:a\x7f"),
            ("quantity", "Temperature"),
            ("quantity", "x" * 33),
            ("quantity", ""),
            ("channel", "a b"),
            ("channel", "1" * 17),
        ]
    ),
    st.integers(0, 199),
)
def test_each_reading_string_rule_refuses_whichever_item_breaks_it(bad: tuple[str, str], at: int) -> None:
    """The readings' strings are checked once per distinct value of a batch, not by msgspec per item: each rule
    still refuses, and the error names the first item that broke it."""
    field, value = bad
    good = {"device_id": "zigbee:a", "quantity": "temperature", "value": 1.0, "ts": 1.0}
    items = [p.Item(seq=i, ts=1.0, body={**good, field: value} if i >= at else good) for i in range(200)]
    batch = p.IngestBatch(hub_id="hub_1", lane="readings", items=items)
    with pytest.raises(p.ProtocolError, match=re.escape(f"$.items[{at}].body.{field}")) as err:
        p.decode_batch("readings", p.decompress_bounded(p.encode_batch(batch)))
    assert err.value.status == 422


def test_a_reading_with_an_unknown_field_is_refused() -> None:
    body = {"device_id": "zigbee:a", "quantity": "temperature", "value": 1.0, "ts": 1.0, "unit": "C"}
    batch = p.IngestBatch(hub_id="hub_1", lane="readings", items=[p.Item(seq=0, ts=1.0, body=body)])
    with pytest.raises(p.ProtocolError, match="unit") as err:
        p.decode_batch("readings", p.decompress_bounded(p.encode_batch(batch)))
    assert err.value.status == 422


def test_accepted_reading_strings_are_remembered_but_never_a_refused_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A steady hub's strings are checked once, not at every batch; a bad one is refused however often it comes,
    and the memory stays bounded."""
    monkeypatch.setattr(p, "_accepted", set())
    monkeypatch.setattr(p, "_ACCEPTED_MAX", 50)

    def decode(devices: list[str]) -> p.TypedBatch:
        items = [
            p.Item(seq=i, ts=1.0, body={"device_id": d, "quantity": "temperature", "value": 1.0, "ts": 1.0})
            for i, d in enumerate(devices)
        ]
        return p.decode_batch(
            "readings", p.decompress_bounded(p.encode_batch(p.IngestBatch("hub_1", "readings", items)))
        )

    decode([f"zigbee:{i}" for i in range(30)])
    assert ("zigbee:0", "temperature", "") in p._accepted and len(p._accepted) == 30
    for _ in range(2):
        with pytest.raises(p.ProtocolError, match=re.escape("$.items[30].body.device_id")):
            decode([f"zigbee:{i}" for i in range(30)] + ["bad device\n"])
    assert len(p._accepted) == 30  # the refused batch taught nothing
    decode([f"zigbee:{i}" for i in range(30, 60)])  # past the bound: forgotten, then these remembered
    assert len(p._accepted) == 30 and ("zigbee:0", "temperature", "") not in p._accepted
