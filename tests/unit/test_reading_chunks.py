"""The packed-chunk encoding that bench/readings_chunks.py measures round-trips: a batch's chunks unnest to exactly
its readings, and a hub's sends with resends (cut the same way or differently) hold each reading exactly once.

The table is modelled by a dict on its primary key (a second chunk with a key already held raises, as PostgreSQL's
key would) and the hub's mark (its highest stored seq), as the bench's ingest keeps them."""

from __future__ import annotations

import importlib.util
import math
import struct
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.protocol import Item, ReadingBody, ReadingItem, reading_columns
from cloud_sync.register import chunks as product
from cloud_sync.register.partitions import reading_rows

# The bench's helper, loaded from its file: bench/ is not a package, and its folder is not put on sys.path.
_spec = importlib.util.spec_from_file_location("bench_chunks", Path(__file__).resolve().parents[2] / "bench/chunks.py")
assert _spec is not None and _spec.loader is not None
ch = importlib.util.module_from_spec(_spec)
sys.modules["bench_chunks"] = ch  # NamedTuple resolves its annotations through the module
_spec.loader.exec_module(ch)

SENSORS = [("zigbee:a", "temperature", ""), ("zigbee:a", "humidity", ""), ("ble:b", "temperature", "1"),
           ("ble:b", "temperature", "2"), ("zigbee:c", "battery", "")]  # fmt: skip
_ts = st.one_of(
    st.floats(min_value=0.0, max_value=2.0**40),  # anywhere: a hub whose clock was wrong
    st.floats(min_value=1.7e9, max_value=1.7e9 + 4 * ch.MAX_SPAN_S),  # near one another: chunks longer than one
)
_reading = st.tuples(st.integers(1, 1000), st.sampled_from(SENSORS), _ts,
                     st.floats(min_value=-1e300, max_value=1e300, allow_nan=False))  # fmt: skip


@st.composite
def streams(draw: st.DrawFn, max_size: int = 120) -> list[ReadingItem]:
    """A hub's readings outbox: strictly ascending seqs (with gaps), any sensor mix, times and values."""
    raw = draw(st.lists(_reading, min_size=1, max_size=max_size))
    out, seq = [], draw(st.integers(0, 2**40))
    for gap, (device_id, quantity, channel), ts, value in raw:
        seq += gap
        body = ReadingBody(device_id=device_id, quantity=quantity, value=value, ts=ts, channel=channel)
        out.append(ReadingItem(seq=seq, ts=ts, body=body))
    return out


def as_readings(items: list[ReadingItem]) -> list[ch.Reading]:
    return [ch.Reading(it.seq, it.body.device_id, it.body.quantity, it.body.channel, it.body.ts, it.body.value)
            for it in items]  # fmt: skip


class Table:
    """``reading_chunks`` and the hubs' marks, as the bench keeps them in PostgreSQL."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, float], ch.Chunk] = {}
        self.marks: dict[str, int] = {}

    def ingest(self, hub: str, batch: list[ReadingItem]) -> int:
        chunks = ch.encode(batch, hub, "hh", 1.0, mark=self.marks.get(hub, -1))
        for c in chunks:
            key = (c.hub_id, c.seq_first, c.ts_first)
            if key in self.rows:
                raise KeyError(key)  # PostgreSQL: a unique violation, the batch's transaction rolled back
            self.rows[key] = c
        self.marks[hub] = max([self.marks.get(hub, -1), *(it.seq for it in batch)])
        return sum(c.n for c in chunks)


@settings(max_examples=300, deadline=None)
@given(streams())
def test_a_batch_unnests_to_its_readings(items: list[ReadingItem]) -> None:
    chunks = ch.encode(items, "hub", "hh", 5.0)
    assert sorted(ch.unnest(chunks)) == as_readings(items)
    keys = set()
    for c in chunks:
        assert c.n == len(c.seqs) == len(c.ts) == len(c.vals) >= 1
        assert c.seqs == sorted(set(c.seqs)) and (c.seq_first, c.seq_last) == (c.seqs[0], c.seqs[-1])
        assert (c.ts_first, c.ts_last) == (min(c.ts), max(c.ts)) and c.ts_last - c.ts_first <= ch.MAX_SPAN_S
        assert (c.vmin, c.vmax, c.vsum) == (min(c.vals), max(c.vals), math.fsum(c.vals))
        keys.add((c.hub_id, c.seq_first, c.ts_first))
    assert len(keys) == len(chunks)  # no two chunks of a batch share the primary key
    # One chunk per sensor unless a sensor's readings are further apart than a chunk may span.
    sensors = {(it.body.device_id, it.body.quantity, it.body.channel) for it in items}
    spans = [max(it.body.ts for it in items) - min(it.body.ts for it in items)]
    if spans[0] <= ch.MAX_SPAN_S:
        assert len(chunks) == len(sensors)
    # The same batch is cut the same way: a resend that reached the table would meet every key it holds.
    assert ch.encode(items, "hub", "hh", 9.0) == [c._replace(received_at=9.0) for c in chunks]


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.tuples(st.integers(1, 40), st.booleans(), st.booleans()), min_size=1, max_size=30),
       st.data())  # fmt: skip
def test_resends_cut_either_way_hold_each_reading_once(
    stream: list[ReadingItem], sends: list[tuple[int, bool, bool]], data: st.DataObject
) -> None:
    """The hub sends from its acked position; a lost ack makes it send from there again, in a batch of another size
    (cut differently) or the same (cut the same way); now and then an old batch arrives again whole."""
    table, acked, sent = Table(), 0, []
    for size, ack_lost, old_again in sends:
        batch = stream[acked : acked + size]
        if batch:
            top = max((b[-1].seq for b in sent), default=-1)
            assert table.ingest("hub", batch) == len([it for it in batch if it.seq > top])
            sent.append(batch)
            if not ack_lost:
                acked += len(batch)
        if old_again and sent:
            assert table.ingest("hub", sent[data.draw(st.integers(0, len(sent) - 1))]) == 0
    held = sorted(ch.unnest(table.rows.values()))
    top = max((b[-1].seq for b in sent), default=-1)
    assert held == as_readings([it for it in stream if it.seq <= top])
    # Another hub's same seqs are its own.
    assert table.ingest("other", stream) == len(stream)


def test_a_resend_past_the_mark_would_meet_the_key() -> None:
    """Without the mark (as when two sends of one batch race), a resend cut the same way conflicts on the key."""
    items = [ReadingItem(seq=s, ts=1.7e9 + s, body=ReadingBody(device_id=f"d{s % 3}", quantity="temperature",
             value=float(s), ts=1.7e9 + s)) for s in range(30)]  # fmt: skip
    table = Table()
    table.ingest("hub", items)
    table.marks.clear()
    with pytest.raises(KeyError):
        table.ingest("hub", items)


@settings(max_examples=300, deadline=None)
@given(items=streams())
def test_the_register_splits_a_batch_into_chunks_and_rows_holding_each_reading_once(items: list[ReadingItem]) -> None:
    """cloud_sync/register/chunks.py: what a batch becomes on a register that writes chunks."""
    packed, rest = product.split(items, "hub-1", "hh-1", 5.0)
    back = sorted(ch.unnest(packed) + as_readings(rest))
    assert back == sorted(as_readings(items))
    assert (packed, rest) == product.split(items, "hub-1", "hh-1", 5.0)  # a resend cut the same way: the same
    for c in packed:
        assert product.CHUNK_MIN <= c.n == len(c.seqs) == len(c.ts) == len(c.vals) <= product.CHUNK_MAX
        assert c.seqs == sorted(c.seqs) and (c.seq_first, c.seq_last) == (c.seqs[0], c.seqs[-1])
        assert c.seq_last - c.seq_first <= product.MAX_SEQ_SPAN
        assert (c.ts_first, c.ts_last) == (min(c.ts), max(c.ts)) and c.ts_last - c.ts_first <= product.MAX_SPAN_S
        assert (c.vmin, c.vmax, c.vsum) == (min(c.vals), max(c.vals), math.fsum(c.vals))
    # A sensor with fewer than CHUNK_MIN readings in the batch stays rows; one whose readings fit one chunk goes whole.
    per_sensor: dict[tuple[str, str, str], list[ReadingItem]] = {}
    for it in items:
        per_sensor.setdefault((it.body.device_id, it.body.quantity, it.body.channel), []).append(it)
    chunked = {(c.device_id, c.quantity, c.channel): c.n for c in packed}
    for key, its in per_sensor.items():
        span = max(i.body.ts for i in its) - min(i.body.ts for i in its)
        seq_span = its[-1].seq - its[0].seq
        if len(its) < product.CHUNK_MIN:
            assert key not in chunked
        elif span <= product.MAX_SPAN_S and len(its) <= product.CHUNK_MAX and seq_span <= product.MAX_SEQ_SPAN:
            assert chunked[key] == len(its)
    # The same readings sent as columns (protocol.ReadingColumns) make the same chunks and the same rows.
    columns = reading_columns("hub-1", [Item(it.seq, it.ts, msgspec.to_builtins(it.body)) for it in items])
    packed_c, rows_c = product.split_columns(columns.sensors, "hub-1", "hh-1", 5.0)
    assert sorted(packed_c) == sorted(packed)
    assert sorted(rows_c) == sorted(reading_rows(rest, "hub-1", "hh-1", 5.0))


@settings(max_examples=300)
@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=200, unique=True))
def test_the_held_lookups_runs_cover_every_seq_and_read_a_width_bounded_by_the_batch(seqs: list[int]) -> None:
    """chunks.runs: each seq in exactly one run, the runs apart by more than RUN_GAP (unless there is one), and the
    seq range they cover at most RUN_GAP per seq: bounded by the batch, however far apart its seqs lie."""
    los, his = product.runs(seqs)
    assert len(los) == len(his) >= 1 and all(lo <= hi for lo, hi in zip(los, his, strict=True))
    assert all(his[k] + product.RUN_GAP < los[k + 1] for k in range(len(los) - 1))
    assert all(sum(lo <= s <= hi for lo, hi in zip(los, his, strict=True)) == 1 for s in seqs)
    assert sum(hi - lo for lo, hi in zip(los, his, strict=True)) <= product.RUN_GAP * len(seqs)
    assert (los, his) == product.runs(list(reversed(seqs)))


def test_a_binary_array_is_postgresql_s_array_send_format() -> None:
    """Golden vectors: ``SELECT array_send(ARRAY[1, -2]::int8[])`` and ``array_send(ARRAY[]::float8[])`` on
    PostgreSQL 15.18 (arrayfuncs.c, array_send: ndim, has-nulls flag, element type oid, then per dimension its length
    and lower bound, then each element's length and bytes; an empty array has no dimension)."""
    want = bytes.fromhex(
        "00000001" "00000000" "00000014" "00000002" "00000001"
        "00000008" "0000000000000001" "00000008" "fffffffffffffffe"
    )  # fmt: skip
    assert product.binary_array(20, "q", [1, -2]) == want
    assert product.binary_array(701, "d", []) == bytes.fromhex("0000000000000000000002bd")


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=False), max_size=300),
    seqs=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300),
)
def test_a_binary_array_holds_exactly_its_values(values: list[float], seqs: list[int]) -> None:
    for oid, code, xs in ((701, "d", values), (20, "q", seqs)):
        raw = product.binary_array(oid, code, xs)
        if not xs:
            assert raw == struct.pack(">iii", 0, 0, oid)
            continue
        ndim, flags, elem, n, lower = struct.unpack_from(">iiiii", raw)
        assert (ndim, flags, elem, n, lower) == (1, 0, oid, len(xs), 1)
        assert len(raw) == 20 + 12 * len(xs)
        got = [struct.unpack_from(f">i{code}", raw, 20 + 12 * i) for i in range(len(xs))]
        assert [length for length, _ in got] == [8] * len(xs)
        assert [x for _, x in got] == xs
