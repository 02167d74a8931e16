"""Readings in packed chunks on PostgreSQL (cloud_sync/register/chunks.py): each reading stored once across rows and
chunks however batches are cut and resent or race, erasure and retention reaching into chunks, the migration and
its downgrade."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync import protocol as p
from cloud_sync.register import chunks, db, ingest, migrate, partitions, retention
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.errors import Forbidden
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from tests.support.register import hub_row

DAY = 86_400.0
NOW = time.time()
SENSORS = 4


@pytest.fixture
def reg(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    r = Registry(Settings(state_dir=tmp_path / "register", db_url=postgres_url, readings_chunks=True))
    try:
        yield r
    finally:
        r.close()


def _hub(reg: Registry, n: int = 0) -> HubIdentity:
    household = reg.create_household(f"koti {n}", actor="test")
    return HubIdentity(hub_id=f"hub-{household}", household_id=household)


def _when(s: int) -> float:
    return NOW - 3 * DAY + s * 7.0


def _item(s: int, sensors: int = SENSORS) -> p.ReadingItem:
    return p.ReadingItem(
        seq=s, ts=_when(s), body=p.ReadingBody(f"zigbee:{s % sensors}", "temperature", 20.0 + s / 8, _when(s))
    )


def _batch(hub: HubIdentity, seqs: list[int], sensors: int = SENSORS) -> p.ReadingsBatch:
    return p.ReadingsBatch(hub_id=hub.hub_id, lane="readings", items=[_item(s, sensors) for s in seqs])


def _held(reg: Registry, hub: HubIdentity) -> list[tuple[int, float, float]]:
    return [(seq, body["ts"], body["value"]) for seq, body in ingest.items(reg, hub.hub_id, "readings")]


def _expected(seqs: set[int]) -> list[tuple[int, float, float]]:
    return [(s, _when(s), 20.0 + s / 8) for s in sorted(seqs)]


def _counts(reg: Registry, hub: HubIdentity) -> tuple[int, int]:
    """The hub's readings held as rows, and as chunks (readings in them)."""
    args = {"h": hub.hub_id}
    with reg.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM readings WHERE hub_id = :h"), args).scalar_one()
        packed = conn.execute(
            sa.text("SELECT coalesce(sum(n), 0) FROM reading_chunks WHERE hub_id = :h"), args
        ).scalar_one()
    return int(rows), int(packed)


def _race(sends: list[Callable[[], p.IngestAck]]) -> list[p.IngestAck]:
    """Runs the sends at once, each in a thread of its own released by one barrier; their acks."""
    acks: list[p.IngestAck] = []
    start = threading.Barrier(len(sends))

    def run(send: Callable[[], p.IngestAck]) -> None:
        start.wait()
        acks.append(send())

    threads = [threading.Thread(target=run, args=(s,)) for s in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acks) == len(sends), "a send failed"
    return acks


def test_a_catch_up_batch_goes_as_chunks_and_a_steady_one_as_rows(reg: Registry) -> None:
    hub = _hub(reg)
    ack = ingest.ingest(reg, hub, _batch(hub, list(range(1, 401))))  # 100 readings a sensor
    assert ack == p.IngestAck(lane="readings", acked_seq=400, stored=400, duplicates=0)
    assert _counts(reg, hub) == (0, 400)
    with reg.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reading_chunks")).scalar_one() == SENSORS
        assert chunks.mark(conn, hub.hub_id) == 400
    ingest.ingest(reg, hub, _batch(hub, list(range(401, 405))))  # one a sensor
    assert _counts(reg, hub) == (4, 400)
    assert _held(reg, hub) == _expected(set(range(1, 405)))


def test_with_chunk_writing_off_the_register_writes_rows_only(tmp_path: Path, postgres_url: str) -> None:
    r = Registry(Settings(state_dir=tmp_path / "off", db_url=postgres_url, readings_chunks=False))
    try:
        hub = _hub(r)
        ingest.ingest(r, hub, _batch(hub, list(range(1, 401))))
        assert _counts(r, hub) == (400, 0)
    finally:
        r.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sends=st.lists(
        st.tuples(st.integers(0, 120), st.integers(1, 80)),  # (first seq, length): cut anyhow, resent, overlapping
        min_size=1,
        max_size=7,
    ),
    sensors=st.sampled_from([1, 3, 20]),
    stride=st.sampled_from([1, 1, chunks.RUN_GAP + 1]),  # or every seq a run of its own in the held lookup
)
def test_each_reading_is_held_once_across_rows_and_chunks_however_batches_are_cut(
    reg: Registry, sends: list[tuple[int, int]], sensors: int, stride: int
) -> None:
    hub = _hub(reg)
    held: set[int] = set()
    for first, length in sends:
        seqs = list(range(first * stride, (first + length) * stride, stride))
        ack = ingest.ingest(reg, hub, _batch(hub, seqs, sensors))
        new = set(seqs) - held
        assert ack == p.IngestAck(lane="readings", acked_seq=seqs[-1], stored=len(new), duplicates=len(seqs) - len(new))
        held |= new
    got = [(s, t, v) for s, t, v in _held(reg, hub)]
    assert got == [(s, _when(s), 20.0 + s / 8) for s in sorted(held)]
    assert sum(_counts(reg, hub)) == len(held)


def test_a_resend_cut_smaller_than_its_chunked_first_send_is_not_stored_again(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first send went as chunks; the resend (a smaller batch size pushed meanwhile) would go as rows, which
    the rows' key cannot see: the chunk mark sends it through the check."""
    hub = _hub(reg)
    ingest.ingest(reg, hub, _batch(hub, list(range(1, 41))))
    ack = ingest.ingest(reg, hub, _batch(hub, [1, 2, 3]))
    assert (ack.stored, ack.duplicates) == (0, 3)
    assert _counts(reg, hub) == (0, 40)
    # Without the mark the rows path would store them again: the test can fail.
    monkeypatch.setattr(chunks, "mark", lambda conn, hub_id: -1)
    ingest.ingest(reg, hub, _batch(hub, [4, 5, 6]))
    assert _counts(reg, hub) == (3, 40)


def test_a_resend_cut_larger_than_its_row_first_send_stores_only_what_is_new(reg: Registry) -> None:
    hub = _hub(reg)
    ingest.ingest(reg, hub, _batch(hub, list(range(1, 5))))  # rows
    ack = ingest.ingest(reg, hub, _batch(hub, list(range(1, 101))))  # the same and more: chunks
    assert (ack.stored, ack.duplicates) == (96, 4)
    assert _counts(reg, hub) == (4, 96)
    assert _held(reg, hub) == _expected(set(range(1, 101)))


def test_concurrent_sends_of_one_batch_cut_differently_store_it_once(reg: Registry) -> None:
    hub = _hub(reg)
    cuts = [list(range(1, 201)), list(range(1, 161)), list(range(41, 201)), list(range(1, 201)), list(range(1, 9))]
    acks = _race([functools.partial(ingest.ingest, reg, hub, _batch(hub, c)) for c in cuts])
    assert sum(a.stored for a in acks) == 200
    assert _held(reg, hub) == _expected(set(range(1, 201)))


def _enrolled(reg: Registry, n: int = 0) -> HubIdentity:
    hub = _hub(reg, n)
    cert = hub_row(reg, hub.hub_id, hub.household_id, NOW)
    return HubIdentity(hub_id=hub.hub_id, household_id=hub.household_id, cert_sha256=cert)


def _encoded(hub: HubIdentity, seqs: list[int], sensors: int = SENSORS) -> bytes:
    b = _batch(hub, seqs, sensors)
    return p.encode_batch(
        p.IngestBatch(
            hub_id=b.hub_id, lane="readings", items=[p.Item(i.seq, i.ts, msgspec.to_builtins(i.body)) for i in b.items]
        )
    )


def test_through_the_request_path_the_admission_takes_the_lock_and_sends_race_safely(reg: Registry) -> None:
    """ingest_body takes the hub's lock in its admission statement (one statement fewer than ingest()): concurrent
    sends cut differently, as chunks and as rows, still store each reading once."""
    hub = _enrolled(reg)
    cuts = [list(range(1, 201)), list(range(1, 161)), list(range(41, 201)), list(range(1, 4)), list(range(150, 153))]
    bodies = [_encoded(hub, c) for c in cuts]
    acks = _race([functools.partial(ingest.ingest_body, reg, hub, "readings", b) for b in bodies])
    assert sum(a.stored for a in acks) == 200
    assert _held(reg, hub) == _expected(set(range(1, 201)))
    # A smaller resend after the chunks, through the same path: the mark sends it through the check.
    ack = ingest.ingest_body(reg, hub, "readings", _encoded(hub, [5, 6, 7]))
    assert (ack.stored, ack.duplicates) == (0, 3)


def test_a_body_that_does_not_decode_is_refused_after_the_hubs_check(reg: Registry) -> None:
    hub = _enrolled(reg)
    with pytest.raises(p.ProtocolError):
        ingest.ingest_body(reg, hub, "readings", b"not zstd")
    stranger = HubIdentity(hub_id="hub-nobody", household_id=hub.household_id, cert_sha256="0" * 64)
    with pytest.raises(Forbidden):
        ingest.ingest_body(reg, stranger, "readings", b"not zstd")


def test_erasing_a_household_takes_its_chunks_and_a_device_erasure_trims_them(reg: Registry) -> None:
    hub, other = _hub(reg, 1), _hub(reg, 2)
    ingest.ingest(reg, hub, _batch(hub, list(range(1, 201))))
    ingest.ingest(reg, other, _batch(other, list(range(1, 201))))
    # A device erasure: one sensor's chunk goes whole; the other sensors' stay.
    removed = retention._delete_batched(reg, db.readings, db.readings.c.device_id == "zigbee:1", 100, set())
    assert removed == 100  # 50 a hub
    assert [s for s, _, _ in _held(reg, hub)] == [s for s in range(1, 201) if s % SENSORS != 1]
    summary = retention.erase_household(reg, hub.household_id, actor="test", tell_hubs=False)
    assert summary["readings"] == 150
    assert _held(reg, hub) == []
    assert len(_held(reg, other)) == 150
    scrubbed = summary["scrub"]
    assert isinstance(scrubbed, dict)
    assert any(str(name).startswith("reading_chunks_p") for name in scrubbed["vacuumed"])


def test_an_erasure_before_a_time_cuts_a_chunk_and_keeps_the_rest(reg: Registry) -> None:
    hub = _hub(reg)
    ingest.ingest(reg, hub, _batch(hub, list(range(1, 201))))
    asked = _when(100) + 0.5
    where = (db.readings.c.hub_id == hub.hub_id) & (db.readings.c.ts < asked)
    hint = (chunks.reading_chunks.c.hub_id == hub.hub_id) & (chunks.reading_chunks.c.ts_first < asked)
    assert retention._delete_batched(reg, db.readings, where, 3, set(), chunk_hint=hint) == 100
    assert _held(reg, hub) == _expected(set(range(101, 201)))
    with reg.engine.connect() as conn:
        firsts = conn.execute(sa.text("SELECT min(ts_first), sum(n) FROM reading_chunks")).one()
    assert firsts == (_when(101), 100)


def test_retention_deletes_old_chunked_readings_by_either_clock_and_drops_old_weeks(reg: Registry) -> None:
    hub = _hub(reg)
    # Weeks reaching back past the cutoff, so that the old chunk lands in a week of its own, not the default one.
    with reg.engine.begin() as conn:
        partitions.ensure_partitions(conn, NOW - 40 * DAY, 183)
    old_week = partitions.partition_name(partitions.week_start(NOW - 200 * DAY), "reading_chunks")
    with reg.engine.connect() as conn:
        assert old_week in partitions.partitions(conn, "reading_chunks")
    old = [
        p.ReadingItem(seq=s, ts=NOW - 200 * DAY, body=p.ReadingBody("zigbee:0", "temperature", 1.0, NOW - 200 * DAY))
        for s in range(1, 11)
    ]
    ingest.ingest(reg, hub, p.ReadingsBatch(hub_id=hub.hub_id, lane="readings", items=old))
    ingest.ingest(reg, hub, _batch(hub, list(range(11, 51))))
    summary = retention.purge_expired(reg)
    assert [s for s, _, _ in _held(reg, hub)] == list(range(11, 51))
    assert summary["readings"] == 10
    assert old_week in summary["readings_partitions_dropped"]  # type: ignore[operator]
    # A week of chunks goes whole only once every chunk starting in it is old (a chunk reaches a day past its week).
    cutoff = NOW - 183 * DAY
    with reg.engine.connect() as conn:
        weeks = partitions.partitions(conn, "reading_chunks")
    assert old_week not in weeks
    assert all(start + 8 * DAY > cutoff for start in weeks.values())


def test_the_migration_downgrade_puts_chunked_readings_back_as_rows(postgres_url: str, tmp_path: Path) -> None:
    r = Registry(Settings(state_dir=tmp_path / "register", db_url=postgres_url, readings_chunks=True))
    try:
        hub = _hub(r)
        ingest.ingest(r, hub, _batch(hub, list(range(1, 101))))
        before = _held(r, hub)
        assert _counts(r, hub) == (0, 100)
        migrate.downgrade(r.engine, "0011_households_unwatched")
        with r.engine.connect() as conn:
            assert not chunks.available(conn)
            assert conn.execute(sa.text("SELECT to_regclass('reading_chunks')")).scalar() is None
        assert _held(r, hub) == before
        migrate.upgrade(r.engine)
        with r.engine.connect() as conn:
            assert chunks.available(conn)
            assert migrate.schema_differences(conn, chunks.metadata) == []
            assert migrate.schema_differences(conn, migrate.full_metadata()) == []
    finally:
        r.close()


# ------------------------------------------------------------------------------------------- readings as columns


def _wire_items(hub: HubIdentity, seqs: list[int], sensors: int = SENSORS) -> list[p.Item]:
    return [p.Item(i.seq, i.ts, msgspec.to_builtins(i.body)) for i in _batch(hub, seqs, sensors).items]


def _columns(hub: HubIdentity, seqs: list[int], sensors: int = SENSORS) -> bytes:
    """A readings batch as the hub sends it once the register takes columns (cloud_sync.uplink.client)."""
    return p.encode_batch(p.reading_columns(hub.hub_id, _wire_items(hub, seqs, sensors)))


def _chunk_layout(reg: Registry, hub: HubIdentity) -> list[tuple[object, ...]]:
    """The hub's chunks as stored (the hub id aside), and its rows' seqs."""
    with reg.engine.connect() as conn:
        packed = conn.execute(
            sa.text("SELECT seq_first, seq_last, device_id, n, seqs, ts, vals, vmin, vmax, vsum FROM reading_chunks"
                    " WHERE hub_id = :h ORDER BY seq_first, device_id"), {"h": hub.hub_id}
        ).all()  # fmt: skip
        rows = conn.execute(sa.text("SELECT seq FROM readings WHERE hub_id = :h ORDER BY seq"), {"h": hub.hub_id})
        return [tuple(c) for c in packed] + [("row", r) for (r,) in rows]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sends=st.lists(
        st.tuples(st.integers(0, 120), st.integers(1, 80), st.booleans()),  # (first seq, length, as columns)
        min_size=1,
        max_size=6,
    ),
    sensors=st.sampled_from([1, 3, 20]),
)
def test_readings_sent_as_columns_are_stored_as_the_same_sends_as_items(
    reg: Registry, sends: list[tuple[int, int, bool]], sensors: int
) -> None:
    """The same sends, one hub's all as items and another's as columns or items (a hub switches after its first
    ack, and back when a register is rolled back): the same acks, the same readings held once, and the same chunks
    and rows, value for value."""
    a, b = _enrolled(reg, 1), _enrolled(reg, 2)
    for first, length, as_columns in sends:
        seqs = list(range(first, first + length))
        want = ingest.ingest_body(reg, a, "readings", _encoded(a, seqs, sensors))
        body = _columns(b, seqs, sensors) if as_columns else _encoded(b, seqs, sensors)
        assert ingest.ingest_body(reg, b, "readings", body, columns=as_columns) == want
    assert _held(reg, b) == _held(reg, a)
    assert _chunk_layout(reg, b) == _chunk_layout(reg, a)


def test_columns_keep_a_households_erasure_and_raise_a_battery_alert(reg: Registry) -> None:
    hub = _enrolled(reg)
    ingest.ingest_body(reg, hub, "readings", _columns(hub, list(range(1, 101))), columns=True)
    with reg.engine.begin() as conn:
        households = db.households
        conn.execute(
            sa.update(households).where(households.c.id == hub.household_id).values(erased_before=_when(150) + 0.5)
        )
    # Readings 101..200, of which those before the household's erasure (up to 150) are dropped on arrival.
    ack = ingest.ingest_body(reg, hub, "readings", _columns(hub, list(range(101, 201))), columns=True)
    assert ack == p.IngestAck(lane="readings", acked_seq=200, stored=50, duplicates=0)
    assert _held(reg, hub) == _expected(set(range(1, 101)) | set(range(151, 201)))
    # A battery running low, in a chunk: the household's alert is raised once.
    items = [p.Item(s, _when(s), {"device_id": "zigbee:lock", "quantity": "battery", "value": 9.0 - s / 100,
                                  "ts": _when(s)}) for s in range(201, 211)]  # fmt: skip
    body = p.encode_batch(p.reading_columns(hub.hub_id, items))
    assert ingest.ingest_body(reg, hub, "readings", body, columns=True).stored == 10
    assert _counts(reg, hub)[1] >= 10
    with reg.engine.connect() as conn:
        kinds = conn.execute(sa.text("SELECT category, device_id FROM alarms WHERE household_id = :h"),
                             {"h": hub.household_id}).all()  # fmt: skip
    assert [tuple(k) for k in kinds] == [("battery_low", "zigbee:lock")]


@pytest.mark.parametrize("step_s", [7.0, 200.0], ids=["cut-at-most-readings", "cut-at-a-day"])
def test_a_long_run_of_one_sensor_sent_as_columns_is_cut_as_items_are(reg: Registry, step_s: float) -> None:
    """2,500 readings of one sensor: cut at CHUNK_MAX readings (7 s apart) or at a day (200 s apart), the same
    way whichever form they came in."""
    a, b = _enrolled(reg, 1), _enrolled(reg, 2)
    items = [p.Item(s, NOW - 6 * DAY + s * step_s, {"device_id": "zigbee:0", "quantity": "temperature",
                                                     "value": s / 4, "ts": NOW - 6 * DAY + s * step_s})
             for s in range(1, 2501)]  # fmt: skip
    as_items = p.encode_batch(p.IngestBatch(a.hub_id, "readings", items))
    ingest.ingest_body(reg, a, "readings", as_items)
    ingest.ingest_body(reg, b, "readings", p.encode_batch(p.reading_columns(b.hub_id, items)), columns=True)
    layout = _chunk_layout(reg, b)
    assert layout == _chunk_layout(reg, a)
    assert len(layout) == (3 if step_s == 7.0 else 6)
    assert all(row[0] != "row" for row in layout)


def _unnested_by_lookup(reg: Registry, hub: HubIdentity, seqs: list[int]) -> int:
    """How many readings PostgreSQL unpacked from chunks to look up ``seqs`` (chunks.held's chunk query, run under
    EXPLAIN ANALYZE: the rows its unnest of the chunks' arrays gave, before and after its filter, over its loops)."""
    los, his = chunks.runs(seqs)
    if len(los) == 1:  # as chunks.held asks
        query, args = chunks._HELD_CHUNKS_RUN, {"lo": los[0], "hi": his[0]}
    else:
        query, args = chunks._HELD_CHUNKS, {"los": los, "his": his}
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(query)
    args |= {"h": hub.hub_id, "span": chunks.MAX_SEQ_SPAN}
    with reg.engine.connect() as conn:
        plan = conn.execute(sa.text(sql), args).scalar_one()[0]["Plan"]

    def walk(node: dict[str, object]) -> int:
        own = 0
        if node.get("Node Type") == "Function Scan" and node.get("Alias") == "u":
            own = (int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))) * int(node["Actual Loops"])  # type: ignore[call-overload]
        return own + sum(walk(child) for child in node.get("Plans", []))  # type: ignore[attr-defined]

    return walk(plan)


def test_a_batch_of_far_apart_seqs_unpacks_only_the_chunks_near_them(reg: Registry) -> None:
    """A hostile hub's batch with seqs far apart (1 and 2^62) makes the register look up what it holds of them: only
    the chunks whose seqs reach near those are unpacked, not every chunk of the hub's in between (its history)."""
    hub = _enrolled(reg)
    for first in range(1, 30_001, 5_000):  # 30,000 readings of 10 sensors: 60 chunks of 500
        ingest.ingest_body(reg, hub, "readings", _columns(hub, list(range(first, first + 5_000)), 10), columns=True)
    assert _counts(reg, hub) == (0, 30_000)
    far = [1, 11, 21, 31, 41, 10**9, 10**12, 2**62]  # sensor 1's first five, and three far beyond
    assert _unnested_by_lookup(reg, hub, list(range(1, 30_001))) == 30_000  # a whole resend unpacks them all
    # Only the chunks whose seq range reaches 1..41 (the first batch's ten) are unpacked, the far seqs none.
    assert _unnested_by_lookup(reg, hub, far) == 10 * 500
    items = _wire_items(hub, far[:5], 10) + [
        p.Item(seq, NOW, {"device_id": "zigbee:far", "quantity": "temperature", "value": 1.0, "ts": NOW})
        for seq in far[5:]
    ]
    ack = ingest.ingest_body(reg, hub, "readings", p.encode_batch(p.reading_columns(hub.hub_id, items)), columns=True)
    assert ack == p.IngestAck(lane="readings", acked_seq=2**62, stored=3, duplicates=5)
    assert _counts(reg, hub) == (3, 30_000)
