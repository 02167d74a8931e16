"""Readings stored in packed chunks (docs/scale.md, the design) against today's ``readings``, in the same run, on a
real PostgreSQL (issue 17: ingest ≥ 300,000 readings/s).

* **rows** (the baseline): ``readings`` exactly as the register's migrations make it (``db.open_engine`` runs them:
  weekly partitions, the primary key ``(hub_id, seq, ts)``, the chart index, the BRIN on arrival), loaded by the
  register's own code for a batch: ``partitions.reading_rows`` and ``partitions.copy_readings(direct=True)`` (the
  straight binary ``COPY``), one transaction per batch.
* **chunks**: ``reading_chunks`` as the design has it (partitioned by week on ``ts_first``, primary key
  ``(hub_id, seq_first, ts_first)``, the chart index ``(household_id, device_id, quantity, ts_first)``, a BRIN on
  ``received_at``), each batch grouped by sensor in Python (``bench/chunks.py``) and written by one binary ``COPY``,
  one transaction per batch, whose first statement reads and raises the hub's mark (its highest stored seq) under a
  row lock: readings at or below it are dropped before grouping (the design's "lookup of the hub's highest
  ``seq_last``"; in the product the mark would be a column of ``hubs``, which the admission statement already reads).

Three batch shapes, each into a database of its own, both layouts loaded in alternating halves so both see the same
machine: **steady** (60 sensors, batches of 60: one reading per chunk), **linger** (batches of 600: 10 per chunk, a
hub lingering 5 minutes) and **catch-up** (batches of 5,000: ~83 per chunk); ``--shapes`` adds lingers of 60 s and
150 s (2 and 5 per chunk). The readings: ``--hubs`` hubs of 60
sensors, one reading per sensor every ~30 s in episodes of 250 rounds (about two hours) spread over the six months
kept, so every weekly partition holds some and a chart of six months has something to read; values a seeded random
walk at 0.01 resolution. Per shape and layout it prints PostgreSQL CPU per 100,000 readings (the loading backend's,
from ``/proc/<pg_backend_pid()>/stat``, and the whole cluster's: WAL writer, checkpointer, autovacuum), the
register-side Python CPU per 100,000 readings (building the ``COPY``: rows or grouping, and the stream), bytes per
reading on disk after ``VACUUM`` (heap, indexes, and the rest: TOAST and the free-space and visibility maps, of
every partition), a chart read (``series.downsample`` against ``unnest`` of the chunks, and against a chunk inside
one bucket read by its ``vmin``/``vmax``/``vsum``: six months of a sensor of its own reporting every ~30 s, ~525,000
readings, loaded after the sizes were taken, in chunks of the shape's size; 200 buckets) and an export of one hub
(``export.py``'s pages of 5,000 against the chunks' pages unnested in Python), each as a ratio chunks/rows. It checks
as it goes: both tables hold every reading once, a resend cut the same way and one cut differently store only what
is new (and the same chunks past the mark meet the key), the chart's buckets and the export's records are equal.

Run (one bench at a time on a shared machine)::

    flock /tmp/kotihub-bench.lock sh -c 'uptime; .venv/bin/python bench/readings_chunks.py; uptime'

About 3 minutes on this machine at the defaults (``--readings`` scales it). Not a test: it prints figures; the
machine's other load is not controlled (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import chunks as ch  # noqa: E402
import psycopg  # noqa: E402
from fleet import postgres_cpu_s  # noqa: E402
from sqlalchemy import Connection, Engine, select, text, tuple_  # noqa: E402

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.register import db, partitions, series  # noqa: E402
from tests.support.postgres import PostgresCluster, start_cluster  # noqa: E402

SENSORS = 60
ROUNDS_PER_EPISODE = 250  # 15,000 readings: a whole number of batches of every shape, so no batch spans a gap
SPAN_S = 182 * 86_400.0
BUCKETS = 200
EXPORT_PAGE = 5000  # export.py's page
TICK = os.sysconf("SC_CLK_TCK")
SHAPES = {"steady": 60, "linger": 600, "catch-up": 5000, "linger-60s": 120, "linger-150s": 300}
"""Batch sizes from 60 sensors reporting every 30 s: a batch a round (no linger), a hub lingering 5 minutes, a
catch-up batch; and (``--shapes``) lingers of one and two and a half minutes, to find where chunks start to pay."""
SHAPE_PER_CHUNK = {name: round(size / SENSORS) for name, size in SHAPES.items()}
QUANTITIES = ("temperature", "humidity")

CHUNKS_DDL = """
CREATE TABLE reading_chunks (
    hub_id varchar(64) NOT NULL, seq_first bigint NOT NULL, seq_last bigint NOT NULL,
    household_id varchar(64) NOT NULL, device_id varchar(128) NOT NULL, quantity varchar(32) NOT NULL,
    channel varchar(16) NOT NULL DEFAULT '', ts_first double precision NOT NULL, ts_last double precision NOT NULL,
    n integer NOT NULL, seqs bigint[] NOT NULL, ts double precision[] NOT NULL, vals double precision[] NOT NULL,
    vmin double precision NOT NULL, vmax double precision NOT NULL, vsum double precision NOT NULL,
    received_at double precision NOT NULL,
    CONSTRAINT reading_chunks_pk PRIMARY KEY (hub_id, seq_first, ts_first)
) PARTITION BY RANGE (ts_first);
CREATE INDEX reading_chunks_sensor_ts ON reading_chunks (household_id, device_id, quantity, ts_first);
CREATE INDEX reading_chunks_received ON reading_chunks USING brin (received_at) WITH (autosummarize = on);
CREATE TABLE reading_chunks_default PARTITION OF reading_chunks DEFAULT;
CREATE TABLE reading_chunk_marks (hub_id varchar(64) PRIMARY KEY, seq_last bigint NOT NULL);
"""
# The hub's mark read and raised in one statement, its row locked first so two sends of one hub take turns (the
# second reads the first's mark once it commits).
MARK_SQL = (
    "UPDATE reading_chunk_marks m SET seq_last = greatest(m.seq_last, %s) FROM (SELECT seq_last AS old"
    " FROM reading_chunk_marks WHERE hub_id = %s FOR UPDATE) o WHERE m.hub_id = %s RETURNING o.old"
)
CHUNKS_COPY = f"COPY reading_chunks ({', '.join(ch.COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# The chart over chunks: every chunk of the sensor that reaches the span (ts_first no earlier than a chunk's longest
# span before it), unnested, bucketed as series.downsample buckets the rows.
CHUNK_CHART = """
SELECT CAST(floor((u.t - %(since)s) * %(scale)s) AS integer) AS b, min(u.v), max(u.v), sum(u.v), count(*)
FROM reading_chunks c CROSS JOIN LATERAL unnest(c.ts, c.vals) AS u(t, v)
WHERE c.household_id = %(h)s AND c.device_id = %(d)s AND c.quantity = %(q)s
  AND c.ts_first >= %(lo)s AND c.ts_first < %(until)s AND c.ts_last >= %(since)s
  AND u.t >= %(since)s AND u.t < %(until)s
GROUP BY b ORDER BY b
"""
# The same, a chunk wholly inside one bucket read from its min, max and sum (no arrays), the others unnested.
_SENSOR = "c.household_id = %(h)s AND c.device_id = %(d)s AND c.quantity = %(q)s"
_WHOLE = (
    "c.ts_first >= %(since)s AND c.ts_last < %(until)s"
    " AND floor((c.ts_first - %(since)s) * %(scale)s) = floor((c.ts_last - %(since)s) * %(scale)s)"
)
SUMMARY_CHART = f"""
SELECT b, min(lo), max(hi), sum(s), sum(k) FROM (
    SELECT CAST(floor((c.ts_first - %(since)s) * %(scale)s) AS integer) AS b, c.vmin AS lo, c.vmax AS hi,
        c.vsum AS s, c.n AS k
    FROM reading_chunks c WHERE {_SENSOR} AND {_WHOLE}
    UNION ALL
    SELECT CAST(floor((u.t - %(since)s) * %(scale)s) AS integer), u.v, u.v, u.v, 1
    FROM reading_chunks c CROSS JOIN LATERAL unnest(c.ts, c.vals) AS u(t, v)
    WHERE {_SENSOR} AND c.ts_first >= %(lo)s AND c.ts_first < %(until)s AND c.ts_last >= %(since)s
      AND NOT ({_WHOLE}) AND u.t >= %(since)s AND u.t < %(until)s
) x GROUP BY b ORDER BY b
"""
ROW_CHART = """
SELECT CAST(floor((ts - %(since)s) * %(scale)s) AS integer) AS b, min(value), max(value), sum(value), count(*)
FROM readings WHERE household_id = %(h)s AND device_id = %(d)s AND quantity = %(q)s
  AND ts >= %(since)s AND ts < %(until)s
GROUP BY b ORDER BY b
"""


@dataclass
class Hub:
    hub_id: str
    household_id: str
    items: list[p.ReadingItem]


@dataclass
class Load:
    """What one layout's load cost: CPU-seconds and readings stored."""

    backend_s: float = 0.0
    cluster_s: float = 0.0
    python_s: float = 0.0
    wall_s: float = 0.0
    readings: int = 0

    def per_100k(self, seconds: float) -> float:
        return seconds * 1e5 / self.readings


# --------------------------------------------------------------------------------------------------- the readings


def make_hubs(n_hubs: int, per_hub: int, now: float, rng: random.Random) -> list[Hub]:
    """``n_hubs`` hubs' readings outboxes: every round each of 60 sensors in a shuffled order, 0.5 s apart, rounds
    ~30 s apart in episodes spread over the six months (each hub's offset differently). Decoded as the register
    decodes a batch, so both layouts store the same structs (decoding is not measured)."""
    rounds = per_hub // SENSORS
    episodes = max(1, rounds // ROUNDS_PER_EPISODE)
    gap = SPAN_S / episodes
    hubs = []
    for h in range(n_hubs):
        hub_id, household = f"hub_{rng.getrandbits(96):024x}", f"hh_{rng.getrandbits(96):024x}"
        devices = [f"zigbee:0x00158d0001{rng.getrandbits(24):06x}" for _ in range(SENSORS)]
        level = [rng.uniform(18.0, 60.0) for _ in range(SENSORS)]
        start = now - SPAN_S + h * gap / n_hubs
        items: list[p.Item] = []
        for r in range(rounds):
            base = start + (r // ROUNDS_PER_EPISODE) * gap + (r % ROUNDS_PER_EPISODE) * 30.0 + rng.uniform(0, 2)
            order = list(range(SENSORS))
            rng.shuffle(order)
            for k, s in enumerate(order):
                level[s] = round(level[s] + rng.gauss(0.0, 0.05), 2)
                ts = base + k * 0.5
                body = {"device_id": devices[s], "quantity": QUANTITIES[s % 2], "value": level[s], "ts": ts}
                items.append(p.Item(seq=len(items), ts=ts, body=body))
        decoded: list[p.ReadingItem] = []
        for i in range(0, len(items), p.MAX_BATCH_ITEMS):
            batch = p.IngestBatch(hub_id=hub_id, lane="readings", items=items[i : i + p.MAX_BATCH_ITEMS])
            typed = p.decode_batch("readings", p.decompress_bounded(p.encode_batch(batch)))
            assert isinstance(typed, p.ReadingsBatch)
            decoded += typed.items
        hubs.append(Hub(hub_id, household, decoded))
    return hubs


def batches(hubs: list[Hub], size: int) -> list[tuple[Hub, list[p.ReadingItem]]]:
    """Every hub's outbox cut into batches of ``size``, the hubs' batches interleaved as a fleet's arrive."""
    per_hub = [[(hub, hub.items[i : i + size]) for i in range(0, len(hub.items), size)] for hub in hubs]
    return [b for group in zip(*per_hub, strict=True) for b in group]


# --------------------------------------------------------------------------------------------------- the loads


def proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@contextmanager
def measured(load: Load, cluster: PostgresCluster, backend_pid: int, n: int) -> Iterator[None]:
    b0, c0, py0, t0 = proc_cpu_s(backend_pid), postgres_cpu_s(cluster), time.process_time(), time.perf_counter()
    yield
    load.backend_s += proc_cpu_s(backend_pid) - b0
    load.cluster_s += postgres_cpu_s(cluster) - c0
    load.python_s += time.process_time() - py0
    load.wall_s += time.perf_counter() - t0
    load.readings += n


def backend_pid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def store_rows(conn: Connection, hub: Hub, items: list[p.ReadingItem]) -> int:
    """A batch into ``readings`` as the register stores it: straight ``COPY``; the stage if the key refuses it."""
    for direct in (True, False):
        conn.begin()
        try:
            rows = partitions.reading_rows(items, hub.hub_id, hub.household_id, time.time())
            stored = partitions.copy_readings(conn, rows, direct=direct)
            conn.commit()
            return stored
        except psycopg.errors.UniqueViolation:
            conn.rollback()
            if not direct:
                raise
    raise AssertionError("unreachable")


def store_chunks(conn: Connection, hub: Hub, items: list[p.ReadingItem], *, use_mark: bool = True) -> int:
    """A batch into ``reading_chunks``: the hub's mark read and raised, the readings above it grouped, one ``COPY``.
    ``use_mark=False`` skips the mark (as two sends racing past it would), to show the key refusing a resend."""
    conn.begin()
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        mark = -1
        if use_mark:
            cursor.execute(MARK_SQL, (items[-1].seq, hub.hub_id, hub.hub_id))
            row = cursor.fetchone()
            assert row is not None, "every hub has a mark row (in the product: its hubs row)"
            mark = int(row[0])
        packed = ch.encode(items, hub.hub_id, hub.household_id, time.time(), mark=mark)
        with cursor.copy(CHUNKS_COPY) as copy:
            copy.set_types(ch.COPY_TYPES)
            for c in packed:
                copy.write_row(c)
    finally:
        cursor.close()
    conn.commit()
    return sum(c.n for c in packed)


def make_chunk_tables(engine: Engine, hubs: list[Hub], now: float) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(CHUNKS_DDL)
        start = partitions.week_start(now - 183 * 86_400)
        while start <= partitions.week_start(now) + partitions.WEEKS_AHEAD * 7 * 86_400:
            name = "reading_chunks_p" + partitions.partition_name(start).removeprefix("readings_p")
            end = start + 7 * 86_400
            conn.exec_driver_sql(
                f"CREATE TABLE {name} PARTITION OF reading_chunks FOR VALUES FROM ({start!r}) TO ({end!r})"
            )
            start += 7 * 86_400
        for hub in hubs:
            conn.execute(text("INSERT INTO reading_chunk_marks VALUES (:h, -1)"), {"h": hub.hub_id})


def chart_sensor(engine: Engine, per_chunk: int, now: float, step: float, seed: int) -> tuple[Hub, int]:
    """One sensor's six months, a reading every ``step`` seconds, into both tables (chunks of ``per_chunk``);
    returns it and how many chunks it made."""
    rng = random.Random(seed)
    sensor = Hub("hub_chart", "hh_chart", [])
    t, value = now - SPAN_S, 21.0
    while t < now:
        value = round(value + rng.gauss(0.0, 0.05), 2)
        body = p.ReadingBody(device_id="zigbee:0x00158d0001c4a27e", quantity="temperature", value=value, ts=t)
        sensor.items.append(p.ReadingItem(seq=len(sensor.items), ts=t, body=body))
        t += step * rng.uniform(0.9, 1.1)
    with engine.begin() as conn:
        rows = partitions.reading_rows(sensor.items, sensor.hub_id, sensor.household_id, now)
        partitions.copy_readings(conn, rows, direct=True)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        made = 0
        try:
            with cursor.copy(CHUNKS_COPY) as copy:
                copy.set_types(ch.COPY_TYPES)
                for i in range(0, len(sensor.items), per_chunk):
                    for c in ch.encode(sensor.items[i : i + per_chunk], sensor.hub_id, sensor.household_id, now):
                        copy.write_row(c)
                        made += 1
        finally:
            cursor.close()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM (ANALYZE) readings, reading_chunks"
        )
    return sensor, made


def on_disk(engine: Engine, table: str) -> dict[str, int]:
    """Bytes of every partition of ``table``: heap, TOAST (with its index) and indexes, after VACUUM."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        row = conn.execute(
            text(
                "SELECT sum(pg_relation_size(i.inhrelid)), sum(pg_indexes_size(i.inhrelid)),"
                " sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i WHERE i.inhparent = to_regclass(:t)"
            ),
            {"t": table},
        ).one()
    heap, indexes, total = (int(x) for x in row)
    return {"heap": heap, "indexes": indexes, "toast": total - heap - indexes, "total": total}  # toast: and the maps


# --------------------------------------------------------------------------------------------------- the reads


def median_of(rounds: int, fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Median wall and Python CPU seconds of ``rounds`` calls (after one to warm the cache), and the last result."""
    out = fn()
    walls, cpus = [], []
    for _ in range(rounds):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def chunk_chart(engine: Engine, params: dict[str, Any], sql: str = CHUNK_CHART) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def buffers(engine: Engine, sql: str, params: dict[str, Any]) -> str:
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params)
            plan = [str(r[0]) for r in cursor.fetchall()]
        finally:
            cursor.close()
    line = next((x for x in plan if "Buffers:" in x), "")
    return line.split("Buffers:")[-1].strip()


def export_rows(engine: Engine, hub: Hub) -> Counter[tuple[Any, ...]]:
    """One hub's readings as export.py reads them: pages of 5,000 in its primary key's order, a record per row."""
    r = db.readings.c
    out: Counter[tuple[Any, ...]] = Counter()
    after: tuple[Any, ...] | None = None
    while True:
        q = select(db.readings).where(r.hub_id == hub.hub_id).order_by(r.seq, r.ts).limit(EXPORT_PAGE)
        if after is not None:
            q = q.where(tuple_(r.seq, r.ts) > tuple_(*after))
        with engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        for row in rows:
            if row["household_id"] == hub.household_id:
                rec = {"type": "reading", **{k: v for k, v in row.items() if k != "household_id"}}
                out[(rec["seq"], rec["device_id"], rec["quantity"], rec["channel"], rec["ts"], rec["value"])] += 1
        if len(rows) < EXPORT_PAGE:
            return out
        after = (rows[-1]["seq"], rows[-1]["ts"])


def export_chunks(engine: Engine, hub: Hub, page: int) -> Counter[tuple[Any, ...]]:
    """The same records from the chunks: pages of ``page`` chunks in key order, unnested into a record each."""
    c = "hub_id, seq_first, household_id, device_id, quantity, channel, ts_first, seqs, ts, vals, received_at"
    out: Counter[tuple[Any, ...]] = Counter()
    after = (-1, 0.0)
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {c} FROM reading_chunks WHERE hub_id = :h AND (seq_first, ts_first) > (:s, :t)"
                    " ORDER BY seq_first, ts_first LIMIT :n"
                ),
                {"h": hub.hub_id, "s": after[0], "t": after[1], "n": page},
            ).all()
        for row in rows:
            if row.household_id != hub.household_id:
                continue
            for seq, t, v in zip(row.seqs, row.ts, row.vals, strict=True):
                rec = {"type": "reading", "hub_id": row.hub_id, "seq": seq, "device_id": row.device_id,
                       "quantity": row.quantity, "value": v, "ts": t, "received_at": row.received_at,
                       "channel": row.channel}  # fmt: skip
                out[(rec["seq"], rec["device_id"], rec["quantity"], rec["channel"], rec["ts"], rec["value"])] += 1
        if len(rows) < page:
            return out
        after = (rows[-1].seq_first, rows[-1].ts_first)


# --------------------------------------------------------------------------------------------------- one shape


def run_shape(
    cluster: PostgresCluster,
    name: str,
    size: int,
    hubs: list[Hub],
    now: float,
    halves: int,
    chart_step: float,
    seed: int,
) -> dict[str, Any]:
    engine = db.open_engine(cluster.url(cluster.create_database()), pool_size=2, max_overflow=2)  # the migrations
    with engine.begin() as conn:
        partitions.ensure_partitions(conn, now, 183)
    make_chunk_tables(engine, hubs, now)
    # Hub 0's last batch is held back for the resend cut differently, below.
    todo = batches(hubs, size)
    last = max(i for i, (hub, _) in enumerate(todo) if hub is hubs[0])
    held_back = todo.pop(last)[1]
    loads = {"rows": Load(), "chunks": Load()}
    part = -(-len(todo) // halves)
    with engine.connect() as rows_conn, engine.connect() as chunks_conn:
        pids = {"rows": backend_pid(rows_conn), "chunks": backend_pid(chunks_conn)}
        rows_conn.commit()
        chunks_conn.commit()
        for k in range(0, len(todo), part):
            for layout, conn, store in (("rows", rows_conn, store_rows), ("chunks", chunks_conn, store_chunks)):
                n = sum(len(items) for _, items in todo[k : k + part])
                with measured(loads[layout], cluster, pids[layout], n):
                    stored = sum(store(conn, hub, items) for hub, items in todo[k : k + part])
                assert stored == n, (layout, stored, n)
            print(f"  {name}: {min(k + part, len(todo))}/{len(todo)} batches loaded", file=sys.stderr)
        # Resends: hub 0's last stored batch again, cut the same way; then its second half with the held-back batch
        # (cut differently). Each layout stores only the held-back readings; the chunks past the mark meet the key.
        prev = next(items for hub, items in reversed(todo) if hub is hubs[0])
        for layout, conn, store in (("rows", rows_conn, store_rows), ("chunks", chunks_conn, store_chunks)):
            assert store(conn, hubs[0], prev) == 0, layout
            assert store(conn, hubs[0], prev[len(prev) // 2 :] + held_back) == len(held_back), layout
        try:
            store_chunks(chunks_conn, hubs[0], prev, use_mark=False)
            raise AssertionError("a resend cut the same way was not refused by the key")
        except psycopg.errors.UniqueViolation:
            chunks_conn.rollback()
    total = sum(len(h.items) for h in hubs)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == total
        held = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT (hub_id, s)), count(DISTINCT (hub_id, seq_first)), sum(n)"
                " FROM reading_chunks, unnest(seqs) AS s"
            )
        ).one()
        assert held[0] == held[1] == total, held
        n_chunks = int(conn.execute(text("SELECT count(*) FROM reading_chunks")).scalar_one())
    sizes = {"rows": on_disk(engine, "readings"), "chunks": on_disk(engine, "reading_chunks")}

    # The chart: a sensor of its own reporting every 30 s for the six months, loaded now (not counted above) in
    # chunks of this shape's size; 200 buckets; both layouts give the same buckets.
    sensor, sensor_chunks = chart_sensor(engine, SHAPE_PER_CHUNK[name], now, chart_step, seed)
    since, until = now - SPAN_S - 86_400, now
    chart: dict[str, Any] = {"h": sensor.household_id, "d": sensor.items[0].body.device_id, "q": "temperature"}
    chart.update(since=since, until=until, scale=BUCKETS / (until - since), lo=since - ch.MAX_SPAN_S)

    def rows_chart() -> series.Buckets:
        return series.downsample(engine, chart["h"], chart["d"], chart["q"], since=since, until=until, buckets=BUCKETS)

    charts = {
        "rows": median_of(7, rows_chart),
        "chunks": median_of(7, lambda: chunk_chart(engine, chart)),
        "summary": median_of(7, lambda: chunk_chart(engine, chart, SUMMARY_CHART)),
    }
    got_rows: series.Buckets = charts["rows"][2]
    for layout in ("chunks", "summary"):
        got = charts[layout][2]
        assert got_rows.count == [int(r[4]) for r in got], f"the {layout} chart differs from the rows'"
        assert got_rows.lo == [r[1] for r in got] and got_rows.hi == [r[2] for r in got], layout
    chart_buffers = {
        "rows": buffers(engine, ROW_CHART, chart),
        "chunks": buffers(engine, CHUNK_CHART, chart),
        "summary": buffers(engine, SUMMARY_CHART, chart),
    }

    # The export of hub 0: export.py's pages of 5,000 rows; pages of chunks holding about as many readings.
    page = max(1, EXPORT_PAGE * n_chunks // total)
    exports = {
        "rows": median_of(3, lambda: export_rows(engine, hubs[0])),
        "chunks": median_of(3, lambda: export_chunks(engine, hubs[0], page)),
    }
    assert exports["rows"][2] == exports["chunks"][2], "the chunks' export differs from the rows'"
    engine.dispose()
    return {
        "name": name,
        "size": size,
        "readings": total,
        "chunks": n_chunks,
        "loads": loads,
        "sizes": sizes,
        "chart": {k: v[:2] for k, v in charts.items()},
        "chart_points": sum(got_rows.count),
        "chart_chunks": sensor_chunks,
        "chart_step": chart_step,
        "chart_buffers": chart_buffers,
        "export": {k: v[:2] for k, v in exports.items()},
        "export_pages": -(-len(hubs[0].items) // EXPORT_PAGE),
        "export_page_chunks": page,
    }


# --------------------------------------------------------------------------------------------------- report


def report(res: dict[str, Any]) -> None:
    rows, chunks = res["loads"]["rows"], res["loads"]["chunks"]
    per_chunk = res["readings"] / res["chunks"]
    print(f"\n== {res['name']}: batches of {res['size']:,} from 60 sensors; {res['readings']:,} readings, "
          f"{res['chunks']:,} chunks ({per_chunk:.1f} readings per chunk)")  # fmt: skip
    print(f"   {'figure':<58} {'rows':>10} {'chunks':>10} {'chunks/rows':>12}")

    def line(label: str, a: float, b: float, fmt: str = "{:10.3f}") -> None:
        print(f"   {label:<58} {fmt.format(a)} {fmt.format(b)} {b / a if a else float('nan'):12.3f}")

    line("PostgreSQL backend CPU-s per 100k readings (load)", rows.per_100k(rows.backend_s),
         chunks.per_100k(chunks.backend_s))  # fmt: skip
    line("PostgreSQL cluster CPU-s per 100k (backend+WAL+autovac)", rows.per_100k(rows.cluster_s),
         chunks.per_100k(chunks.cluster_s))  # fmt: skip
    line("register Python CPU-s per 100k (build + stream the COPY)", rows.per_100k(rows.python_s),
         chunks.per_100k(chunks.python_s))  # fmt: skip
    line("load, readings/s (one connection, wall)", rows.readings / rows.wall_s, chunks.readings / chunks.wall_s,
         "{:10,.0f}")  # fmt: skip
    for part in ("total", "heap", "indexes", "toast"):
        label = f"bytes per reading on disk: {part}" + (", FSM, VM" if part == "toast" else "")
        line(label, res["sizes"]["rows"][part] / res["readings"],
             res["sizes"]["chunks"][part] / res["readings"], "{:10.1f}")  # fmt: skip
    cr, cc = res["chart"]["rows"], res["chart"]["chunks"]
    line(f"chart: 1 sensor, 6 months, {BUCKETS} buckets, ms (unnest)", cr[0] * 1e3, cc[0] * 1e3)
    line("chart, a chunk inside one bucket by its min/max/sum, ms", cr[0] * 1e3, res["chart"]["summary"][0] * 1e3)
    print(f"     ({res['chart_points']:,} readings every ~{res['chart_step']:.0f} s, {res['chart_chunks']:,} chunks)")
    b = res["chart_buffers"]
    print(f"     buffers: rows {b['rows']} | unnest {b['chunks']} | min/max/sum {b['summary']}")
    er, ec = res["export"]["rows"], res["export"]["chunks"]
    pages = res["export_pages"]
    line(f"export, ms per page of 5,000 readings ({res['export_page_chunks']} chunks a page)", er[0] / pages * 1e3,
         ec[0] / pages * 1e3)  # fmt: skip
    line("  of which Python CPU, ms per page", er[1] / pages * 1e3, ec[1] / pages * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=600_000, help="readings per shape (all hubs)")
    ap.add_argument("--hubs", type=int, default=4)
    ap.add_argument("--halves", type=int, default=2, help="parts each layout's load is cut into, alternating")
    ap.add_argument("--shapes", default="steady,linger,catch-up", help="which of: " + ", ".join(SHAPES))
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--chart-step", type=float, default=30.0, help="seconds between the chart sensor's readings")
    args = ap.parse_args()
    per_hub = args.readings // args.hubs // (ROUNDS_PER_EPISODE * SENSORS) * ROUNDS_PER_EPISODE * SENSORS
    if per_hub < ROUNDS_PER_EPISODE * SENSORS:
        ap.error(f"--readings must be at least {args.hubs * ROUNDS_PER_EPISODE * SENSORS:,} for {args.hubs} hubs")
    load0, t0 = os.getloadavg(), time.perf_counter()
    now = time.time()
    hubs = make_hubs(args.hubs, per_hub, now, random.Random(args.seed))
    results = []
    cluster = start_cluster()
    try:
        for name in args.shapes.split(","):
            results.append(run_shape(cluster, name, SHAPES[name], hubs, now, args.halves, args.chart_step, args.seed))
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
    print(f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work included);"
          f" {time.perf_counter() - t0:.0f} s; seed {args.seed}")  # fmt: skip
    print(f"loaded per shape: {args.hubs} hubs x 60 sensors x {per_hub // SENSORS:,} rounds = "
          f"{args.hubs * per_hub:,} readings over {SPAN_S / 86_400:.0f} days (episodes of {ROUNDS_PER_EPISODE} rounds"
          f" ~30 s apart), both layouts in {args.halves} alternating parts; PostgreSQL 15, fsync on")  # fmt: skip
    for res in results:
        report(res)


if __name__ == "__main__":
    main()
