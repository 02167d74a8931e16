"""Readings on PostgreSQL at fleet scale: ingest by COPY keeps exactly-once on (hub, lane, seq), readings are
partitioned by week, retention drops whole weeks, and erasure rewrites only the partitions it deleted from."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync import protocol as p
from cloud_sync.register import db, ingest, migrate, partitions, retention
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.notify import schema
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings

DAY = 86_400.0
NOW = time.time()


@pytest.fixture
def reg(registry_pg_rows: Registry) -> Registry:
    """Chunk writing off: this file is about the rows of ``readings`` and their weeks (chunks:
    test_reading_chunks.py)."""
    return registry_pg_rows


def _hub(reg: Registry, n: int = 0) -> HubIdentity:
    household = reg.create_household(f"koti {n}", actor="test")
    return HubIdentity(hub_id=f"hub-{household}", household_id=household)


def _batch(hub: HubIdentity, seqs: list[int], ts: Any = None) -> p.ReadingsBatch:
    when = ts or (lambda s: NOW - 3600 + s)
    return p.ReadingsBatch(
        hub_id=hub.hub_id,
        lane="readings",
        items=[
            p.ReadingItem(seq=s, ts=when(s), body=p.ReadingBody(f"mqtt:{s % 7}", "temperature", 20.0 + s / 8, when(s)))
            for s in seqs
        ],
    )


def _held(reg: Registry, hub: HubIdentity) -> list[int]:
    return [seq for seq, _ in ingest.items(reg, hub.hub_id, "readings")]


def test_a_fresh_postgresql_register_partitions_readings_by_week(reg: Registry) -> None:
    with reg.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        weeks = partitions.partitions(conn)
        pk = conn.execute(
            sa.text(
                "SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'readings'::regclass"
                " AND i.indisprimary"
            )
        ).scalar()
    assert sorted(pk) == ["hub_id", "seq", "ts"]
    assert partitions.partition_name(partitions.week_start(NOW)) in weeks
    assert partitions.partition_name(partitions.week_start(NOW + 4 * 7 * DAY)) in weeks
    # Six months back (the default retention) are ready for a hub's catch-up, and nothing older.
    assert min(weeks.values()) == partitions.week_start(NOW - 183 * DAY)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sends=st.lists(
        st.tuples(st.integers(0, 300), st.integers(1, 200)),  # (first seq, length): overlapping, repeated, disjoint
        min_size=1,
        max_size=6,
    ),
    weeks_apart=st.booleans(),
)
def test_copy_ingest_stores_each_seq_once_whatever_is_resent(
    reg: Registry, sends: list[tuple[int, int]], weeks_apart: bool
) -> None:
    hub = _hub(reg)
    # With weeks_apart a batch spans several partitions: dedup must hold in each.
    when = (lambda s: NOW - 3600 - (s % 4) * 7 * DAY) if weeks_apart else None
    held: set[int] = set()
    for first, length in sends:
        seqs = list(range(first, first + length))
        ack = ingest.ingest(reg, hub, _batch(hub, seqs, when))
        new = set(seqs) - held
        assert ack == p.IngestAck(lane="readings", acked_seq=seqs[-1], stored=len(new), duplicates=len(seqs) - len(new))
        held |= new
    assert _held(reg, hub) == sorted(held)


class _CutMidway(list[partitions.ReadingRow]):
    """Rows that kill their own database session once half of them have gone into the COPY: a register crash or a
    network cut in the middle of a batch."""

    def __init__(self, rows: list[partitions.ReadingRow], dsn: str, pid: int) -> None:
        super().__init__(rows)
        self.dsn, self.pid = dsn, pid

    def __iter__(self) -> Iterator[partitions.ReadingRow]:
        for i, row in enumerate(super().__iter__()):
            if i == len(self) // 2:
                with psycopg.connect(self.dsn, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (self.pid,))
            yield row


def _copy_cut_midway(reg: Registry, rows: list[partitions.ReadingRow], dsn: str, *, direct: bool) -> None:
    with reg.engine.begin() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        partitions.copy_readings(conn, _CutMidway(rows, dsn, pid), direct=direct)


@pytest.mark.parametrize("direct", [True, False], ids=["straight-copy", "stage"])
def test_a_batch_cut_midway_stores_nothing_and_its_resend_stores_all_once(
    reg: Registry, postgres_url: str, direct: bool
) -> None:
    hub = _hub(reg)
    ingest.ingest(reg, hub, _batch(hub, list(range(0, 100))))
    first = 100 if direct else 50  # the straight COPY is only tried on a batch the register holds nothing of
    cut = _batch(hub, list(range(first, 5050)))
    rows = partitions.reading_rows(cut.items, hub.hub_id, hub.household_id, time.time())
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with pytest.raises(sa.exc.DBAPIError):
        _copy_cut_midway(reg, rows, dsn, direct=direct)
    assert _held(reg, hub) == list(range(100))  # the first batch, nothing of the cut one
    ack = ingest.ingest(reg, hub, _batch(hub, list(range(50, 5050))))
    assert ack == p.IngestAck(lane="readings", acked_seq=5049, stored=4950, duplicates=50)
    assert _held(reg, hub) == list(range(5050))


def test_concurrent_resends_of_one_batch_store_it_once(reg: Registry) -> None:
    """A hub whose ack was lost resends while the first send is still committing (two register workers)."""
    hub = _hub(reg)
    batch = _batch(hub, list(range(2000)))
    acks: list[p.IngestAck] = []
    threads = [threading.Thread(target=lambda: acks.append(ingest.ingest(reg, hub, batch))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(a.stored for a in acks) == 2000
    assert all(a.stored + a.duplicates == 2000 and a.acked_seq == 1999 for a in acks)
    assert _held(reg, hub) == list(range(2000))


def test_a_batch_whose_last_item_is_held_falls_back_and_stores_the_rest_once(reg: Registry) -> None:
    """The primary key refuses the straight COPY only at the end, after thousands of rows were streamed: the
    transaction is rolled back and the stage stores the rest."""
    hub = _hub(reg)
    assert ingest.ingest(reg, hub, _batch(hub, [9000])).stored == 1
    ack = ingest.ingest(reg, hub, _batch(hub, [*range(4000), 9000]))
    assert ack == p.IngestAck(lane="readings", acked_seq=9000, stored=4000, duplicates=1)
    assert _held(reg, hub) == [*range(4000), 9000]


def test_the_straight_copy_keeps_the_erasure_watermark_and_the_battery_alerts(reg: Registry) -> None:
    """Both store paths drop items recorded before the household's last erasure and open battery alerts in the
    batch's transaction: a fresh batch (straight COPY) and a resend of it with more (the stage)."""
    hub = _hub(reg)
    with reg.engine.begin() as conn:
        conn.execute(
            sa.update(db.households).where(db.households.c.id == hub.household_id).values(erased_before=NOW - 1000)
        )

    def batch(seqs: range) -> p.ReadingsBatch:
        return p.ReadingsBatch(
            hub_id=hub.hub_id,
            lane="readings",
            items=[
                p.ReadingItem(
                    seq=s, ts=NOW - 2000 + s, body=p.ReadingBody(f"mqtt:{s % 2}", "battery", 5.0, NOW - 2000 + s)
                )
                for s in seqs
            ],
        )

    # Seqs 0-999 were recorded before the erasure: dropped, counted neither stored nor duplicate.
    assert ingest.ingest(reg, hub, batch(range(0, 1200))) == p.IngestAck("readings", 1199, stored=200, duplicates=0)
    assert ingest.ingest(reg, hub, batch(range(900, 1300))) == p.IngestAck("readings", 1299, stored=100, duplicates=200)
    assert _held(reg, hub) == list(range(1000, 1300))
    with reg.engine.connect() as conn:
        alarms = conn.execute(
            sa.select(schema.alarms.c.device_id, schema.alarms.c.category).where(schema.alarms.c.hub_id == hub.hub_id)
        ).all()
    assert sorted(alarms) == [("mqtt:0", "battery_low"), ("mqtt:1", "battery_low")]


def _week_of(reg: Registry, ts: float) -> str:
    with reg.engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT tableoid::regclass::text FROM readings WHERE ts = :ts"), {"ts": ts}).scalar()
        )


def test_retention_drops_expired_weeks_whole_and_makes_the_weeks_ahead(reg: Registry) -> None:
    hub = _hub(reg)
    old_ts = NOW - 180 * DAY
    ingest.ingest(reg, hub, _batch(hub, [0, 1], lambda s: old_ts + s))
    ingest.ingest(reg, hub, _batch(hub, [2, 3]))
    old_week = _week_of(reg, old_ts)
    assert old_week == partitions.partition_name(partitions.week_start(old_ts))
    later = NOW + 10 * DAY  # the 180-day-old week is now past the 183-day period
    summary = retention.purge_expired(reg, now=later)
    assert old_week in summary["readings_partitions_dropped"]  # type: ignore[operator]
    assert summary["readings"] == 2  # counted, though nothing was deleted row by row: the week went whole
    with reg.engine.connect() as conn:
        weeks = partitions.partitions(conn)
    assert old_week not in weeks
    assert partitions.partition_name(partitions.week_start(later + 4 * 7 * DAY)) in weeks
    assert _held(reg, hub) == [2, 3]
    # The scrub rewrote no readings partition: dropping needed none.
    assert not any(n.startswith("readings") for n in summary["scrub"]["vacuumed"])  # type: ignore[index]


def test_a_week_detached_but_not_dropped_before_a_crash_is_dropped_by_the_next_run(reg: Registry) -> None:
    hub = _hub(reg)
    old_ts = NOW - 180 * DAY
    ingest.ingest(reg, hub, _batch(hub, [0, 1, 2], lambda s: old_ts + s))
    week = _week_of(reg, old_ts)
    with reg.engine.begin() as conn:  # what drop_expired had done when the register was killed
        conn.execute(sa.text(f"ALTER TABLE readings DETACH PARTITION {week}"))
    summary = retention.purge_expired(reg)  # today: that week is not due yet, but it is no longer attached
    assert summary["readings_partitions_dropped"] == [week] and summary["readings"] == 3
    assert _held(reg, hub) == []
    with reg.engine.connect() as conn:  # the week is still within the period: made afresh, empty, attached
        assert week in partitions.partitions(conn)
        assert conn.execute(sa.text(f"SELECT count(*) FROM {week}")).scalar() == 0


def test_a_reading_outside_every_week_waits_in_the_default_partition_and_moves_when_its_week_is_made(
    reg: Registry,
) -> None:
    hub = _hub(reg)
    future = NOW + 60 * DAY  # a hub clock two months fast
    batch = _batch(hub, [0, 1], lambda s: future + s)
    assert ingest.ingest(reg, hub, batch).stored == 2
    assert _week_of(reg, future) == "readings_default"
    retention.purge_expired(reg, now=NOW + 40 * DAY)  # its week is now within the four made ahead
    assert _week_of(reg, future) == partitions.partition_name(partitions.week_start(future))
    # Dedup holds after the move: the resend is all duplicates.
    assert ingest.ingest(reg, hub, batch) == p.IngestAck(lane="readings", acked_seq=1, stored=0, duplicates=2)
    assert _held(reg, hub) == [0, 1]


def test_erasure_rewrites_only_the_partitions_it_deleted_from(reg: Registry) -> None:
    a, b = _hub(reg, 1), _hub(reg, 2)
    a_ts, b_ts = NOW - 30 * DAY, NOW - 3600
    ingest.ingest(reg, a, _batch(a, list(range(50)), lambda s: a_ts + s))
    ingest.ingest(reg, b, _batch(b, list(range(50)), lambda s: b_ts + s))
    a_week, b_week = _week_of(reg, a_ts), _week_of(reg, b_ts)
    assert a_week != b_week
    summary = retention.erase_household(reg, a.household_id, actor="test", tell_hubs=False)
    assert summary["readings"] == 50
    vacuumed = summary["scrub"]["vacuumed"]  # type: ignore[index]
    assert a_week in vacuumed and b_week not in vacuumed and "readings" not in vacuumed
    assert _held(reg, a) == [] and _held(reg, b) == list(range(50))
    # A late resend from before the erasure is acknowledged and not stored again.
    late = ingest.ingest(reg, a, _batch(a, list(range(50)), lambda s: a_ts + s))
    assert late.acked_seq == 49 and late.stored == 0 and _held(reg, a) == []


def test_sqlite_keeps_its_table_and_key(tmp_path: Path) -> None:
    r = Registry(Settings(state_dir=tmp_path / "register"))
    try:
        with r.engine.connect() as conn:
            assert not partitions.is_partitioned(conn)
        hub = _hub(r)
        assert ingest.ingest(r, hub, _batch(hub, [0, 1, 2])).stored == 3
        assert ingest.ingest(r, hub, _batch(hub, [1, 2, 3])).duplicates == 2
        assert retention.purge_expired(r)["readings_partitions_dropped"] == []
    finally:
        r.close()


def test_the_migration_partitions_a_filled_table_and_its_downgrade_puts_it_back(postgres_url: str) -> None:
    engine = db.open_engine(postgres_url, create=False)
    try:
        migrate.upgrade(engine, "0002_command_notify")
        rows = [
            {"hub_id": "h", "seq": i, "household_id": "hh", "device_id": "d", "quantity": "t", "value": float(i),
             "ts": ts, "received_at": NOW}
            for i, ts in enumerate([NOW - 3600, NOW - 40 * DAY, NOW - 400 * DAY, NOW + 400 * DAY])
        ]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(sa.insert(db.readings), rows)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert partitions.is_partitioned(conn)
            where = conn.execute(sa.text("SELECT seq, tableoid::regclass::text FROM readings ORDER BY seq")).all()
        assert where == [
            (0, partitions.partition_name(partitions.week_start(NOW - 3600))),
            (1, partitions.partition_name(partitions.week_start(NOW - 40 * DAY))),
            (2, "readings_default"),  # older than any week made: retention deletes it row by row
            (3, "readings_default"),
        ]
        migrate.downgrade(engine, "0002_command_notify")
        with engine.connect() as conn:
            assert not partitions.is_partitioned(conn)
            assert conn.execute(sa.text("SELECT count(*) FROM readings")).scalar() == 4
            leftovers = conn.execute(
                sa.text("SELECT count(*) FROM pg_class WHERE relname ~ '^readings_(p[0-9]{8}|default|old)$'")
            )
            assert leftovers.scalar() == 0
    finally:
        engine.dispose()
