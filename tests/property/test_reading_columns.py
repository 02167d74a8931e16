"""Readings sent as columns (cloud_sync.protocol.ReadingColumns): the hub's grouping and the register's decode give
back exactly the readings of the items, and every rule that refuses an item refuses the same reading as columns."""

from __future__ import annotations

import re
import tracemalloc
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync import protocol as p
from tests.property.test_protocol_codec import outcome, readings, seqs


def _body(b: p.ReadingBody) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(b)
    out.setdefault("channel", "")
    return out


def _wire(columns: p.ReadingColumns) -> bytes:
    return p.decompress_bounded(p.encode_batch(columns))


@st.composite
def reading_items(draw: st.DrawFn, max_size: int = 60) -> list[p.Item]:
    """Items of a readings batch from a few sensors (so that sensors hold several readings each)."""
    sensors = draw(st.lists(readings, min_size=1, max_size=4))
    out = []
    for seq in draw(seqs(max_size)):
        sensor = draw(st.sampled_from(sensors))
        out.append(
            p.Item(seq=seq, ts=1.0, body={**sensor, "value": draw(readings)["value"], "ts": draw(readings)["ts"]})
        )
    return out


@settings(max_examples=200)
@given(reading_items())
def test_columns_hold_exactly_the_items_readings(items: list[p.Item]) -> None:
    columns = p.reading_columns("hub_1", items)
    decoded = p.decode_columns("readings", _wire(columns))
    assert decoded.hub_id == "hub_1" and decoded.lane == "readings"
    assert len(decoded) == len(items)
    assert decoded.last_seq == (items[-1].seq if items else -1)
    back = decoded.items()
    assert [it.seq for it in back] == [it.seq for it in items]
    assert [_body(it.body) for it in back] == [{"channel": "", **it.body} for it in items]
    # The same readings as an items batch decode to the same bodies.
    batch = p.decode_batch("readings", p.decompress_bounded(p.encode_batch(p.IngestBatch("hub_1", "readings", items))))
    assert [_body(it.body) for it in batch.items] == [_body(it.body) for it in back]


@given(reading_items(), st.sampled_from([lane for lane in p.LANES if lane != "readings"]))
def test_columns_on_another_lane_are_refused(items: list[p.Item], lane: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.decode_columns(lane, _wire(p.reading_columns("hub_1", items)))
    assert err.value.status == 415


def _sensor(**kw: Any) -> dict[str, Any]:
    base = {"device_id": "zigbee:a", "quantity": "temperature", "channel": "", "seqs": [1, 2, 3],
            "ts": [1.0, 2.0, 3.0], "values": [20.0, 20.5, 21.0]}  # fmt: skip
    return {**base, **kw}


def _refusal(*sensors: dict[str, Any], lane: str = "readings") -> p.ProtocolError:
    raw = msgspec.msgpack.encode({"hub_id": "hub_1", "lane": lane, "sensors": list(sensors)})
    with pytest.raises(p.ProtocolError) as err:
        p.decode_columns("readings", raw)
    return err.value


@pytest.mark.parametrize(
    ("sensor", "message"),
    [
        (_sensor(ts=[1.0, 2.0]), "sensors[0] has 3 seqs, 2 ts and 3 values"),
        (_sensor(values=[1.0]), "sensors[0] has 3 seqs, 3 ts and 1 values"),
        (_sensor(seqs=[1, 3, 2]), "sensors[0].seqs do not strictly ascend"),
        (_sensor(seqs=[1, 1, 2]), "sensors[0].seqs do not strictly ascend"),
        (_sensor(seqs=[], ts=[], values=[]), "sensors[0] has 0 seqs, 0 ts and 0 values"),
        (_sensor(ts=5.0), "sensors[0] has 3 seqs, -1 ts and 3 values (-1: not an array)"),
        (_sensor(seqs=[1, 2, 2**62 + 1]), "<= 4611686018427387904 - at `$.sensors[0].seqs[2]`"),
        (_sensor(values=[1.0, float("nan"), 2.0]), "$.sensors[0].values[1]"),
        (_sensor(ts=[1.0, float("inf"), 2.0]), "$.sensors[0].ts[1]"),
        (_sensor(unit="C"), "unit"),
        (_sensor(values=[1.0, "x", 2.0]), "Expected `float`, got `str` - at `$.sensors[0].values[1]`"),
        (_sensor(device_id=""), "$.sensors[0].device_id"),
        (_sensor(quantity="Temperature"), "$.sensors[0].quantity"),
        (_sensor(channel="a b"), "$.sensors[0].channel"),
    ],
)
def test_a_bad_sensor_is_refused_with_what_is_wrong(sensor: dict[str, Any], message: str) -> None:
    err = _refusal(_sensor(device_id="zigbee:ok", seqs=[10, 11, 12]), sensor)
    assert err.status == 422
    assert message.replace("sensors[0]", "sensors[1]") in str(err), str(err)


def test_a_seq_under_two_sensors_and_too_many_readings_are_refused() -> None:
    err = _refusal(_sensor(), _sensor(device_id="zigbee:b", seqs=[3, 4, 5]))
    assert err.status == 422 and "a seq appears under two sensors" in str(err)
    n = p.MAX_BATCH_ITEMS // 2 + 1
    big = [_sensor(device_id=f"zigbee:{k}", seqs=list(range(k * n, (k + 1) * n)), ts=[1.0] * n, values=[1.0] * n)
           for k in range(2)]  # fmt: skip
    err = _refusal(*big)
    assert err.status == 422 and re.search(r"\b20002 readings, more than 20000\b", str(err))
    assert _refusal(_sensor(), lane="events").status == 422  # the batch says another lane than the URL


def test_arrays_holding_more_readings_than_a_batch_may_are_refused_before_they_are_decoded() -> None:
    """The arrays' lengths are read from their headers first: three sensors of 20,000 readings each (three times
    what a batch may hold) are refused for their count without the register building their 180,000 numbers."""
    n = p.MAX_BATCH_ITEMS
    sensors = [_sensor(device_id=f"zigbee:{k}", seqs=list(range(k * n, (k + 1) * n)), ts=[1.0] * n, values=[1.0] * n)
               for k in range(3)]  # fmt: skip
    body = msgspec.msgpack.encode({"hub_id": "hub_1", "lane": "readings", "sensors": sensors})
    tracemalloc.start()
    try:
        err = outcome(lambda: p.decode_columns("readings", body))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(err, p.ProtocolError) and err.status == 422 and "60000 readings, more than 20000" in str(err)
    assert peak < 1_000_000, f"{peak} bytes: the arrays were decoded (some 6 MB)"
    # An array whose header claims four billion elements with none behind it is not read either.
    raw = msgspec.msgpack.encode(_sensor(seqs=[1], ts=[1.0], values=[1.0]))
    cut = raw.replace(b"\x91\x01", b"\xdd\xff\xff\xff\xff", 1)
    body = msgspec.msgpack.encode({"hub_id": "hub_1", "lane": "readings", "sensors": [msgspec.Raw(cut)]})
    err = outcome(lambda: p.decode_columns("readings", body))
    assert isinstance(err, p.ProtocolError) and err.status == 400 and "truncated" in str(err)
    same = [_sensor(device_id=f"zigbee:{k}", seqs=[k], ts=[1.0], values=[1.0]) for k in range(n + 1)]
    body = msgspec.msgpack.encode({"hub_id": "hub_1", "lane": "readings", "sensors": same})
    err = outcome(lambda: p.decode_columns("readings", body))
    assert isinstance(err, p.ProtocolError) and "length <= 20000" in str(err)


@given(st.binary(max_size=2000))
def test_garbage_only_raises_protocol_error(data: bytes) -> None:
    got = outcome(lambda: p.decode_columns("readings", data))
    assert isinstance(got, p.ReadingColumns) or (isinstance(got, p.ProtocolError) and got.status in (400, 422))
