"""The plans of every read of ``readings`` that used ``readings_household_ts`` (dropped by migration 0008), and of
retention by arrival time on the BRIN, on real PostgreSQL with enough rows that the plans are real; then the same
reads as the release before made them, on its schema (downgraded to 0007), in the same run.

Fills ``--households`` households (one hub, 60 sensors, a reading every ``--step`` minutes each over ``--days``
days, in time order, so spread over the weekly partitions as the fleet's are) into the register's schema, ANALYZEs,
then prints for each query its plan's nodes (``EXPLAIN (ANALYZE, BUFFERS)``) and its time. What to look for: no
``Seq Scan`` of a filled week, buffers in the tens to hundreds (not the household's hundreds of thousands of rows).

Run: ``.venv/bin/python bench/readings_plans.py [--households 40] [--days 14] [--step 5]``. Not a test.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, func, select, text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from cloud_sync.register import db, migrate, partitions, series  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

NOW = 1_764_000_000.0
SENSORS = 60


def fill(engine: Engine, households: int, days: int, step_min: int) -> int:
    with engine.begin() as conn:
        partitions.ensure_partitions(conn, NOW, 183)
        for h in range(households):
            conn.execute(db.households.insert(), [{"id": f"hh_{h}", "name": "x", "created_at": NOW}])
            hub = {"id": f"hub_{h}", "household_id": f"hh_{h}", "name": "", "enrolled_at": NOW, "cert_sha256": "x"}
            conn.execute(db.hubs.insert(), [{**hub, "revoked": False}])
    n = 0
    minutes = days * 1440
    # Day by day, every household's day in turn: rows arrive in time order, as the fleet sends them.
    for day in range(0, minutes, 1440):
        for h in range(households):
            rows = [
                (f"hub_{h}", m * SENSORS + s, f"hh_{h}", f"zigbee:{s:02d}", ("temperature", "humidity")[s % 2],
                 20.0 + s / 10, NOW - (minutes - m) * 60.0, NOW - (minutes - m) * 60.0 + 5, "")
                for m in range(day, day + 1440, step_min)
                for s in range(SENSORS)
            ]  # fmt: skip
            with engine.begin() as conn:
                n += partitions.copy_readings(conn, rows, direct=True)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE readings")
    return n


def explain(engine: Engine, label: str, sql: str, params: dict[str, Any]) -> None:
    with engine.connect() as conn:
        plan = [
            str(r[0]) for r in conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {sql}"), params)
        ]
    # Scans of the empty weeks (made ahead, or before the data) are no cost whatever their kind: left out.
    busy = [line for line in plan if ("->" in line and "actual rows=0 loops=1)" not in line) or line[:1] != " "]
    found = {m.group(0) for line in busy for m in [re.search(r"(Seq|Index Only|Index|Bitmap Heap) Scan", line)] if m}
    buffers = next((line.strip() for line in plan if "Buffers:" in line), "")
    took = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
    print(f"\n== {label}: {', '.join(sorted(found)) or '-'} on non-empty weeks; {buffers}; {took}")
    for line in busy[:12]:
        print("   " + line.rstrip()[:150])
    if len(busy) > 12:
        print(f"   … {len(busy) - 12} more nodes")


def compiled(stmt: Any) -> str:
    return str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=40)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--step", type=int, default=5, help="minutes between two readings of a sensor")
    args = ap.parse_args()
    cluster = start_cluster()
    try:
        engine = db.open_engine(cluster.url(cluster.create_database()))
        t = time.perf_counter()
        n = fill(engine, args.households, args.days, args.step)
        print(f"{n:,} readings in {args.households} households ({n // args.households:,} each), "
              f"{time.perf_counter() - t:.0f} s to fill")  # fmt: skip
        with engine.connect() as conn:
            idx = conn.execute(
                text("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'readings'::regclass")
            )
            print("indexes on readings:", ", ".join(sorted(idx.scalars())))
        h = {"h": "hh_1", "since": NOW - 7 * 86_400, "cut": NOW - 183 * 86_400}
        r = db.readings.c
        since = NOW - 600
        top = select(func.max(r.seq)).where(r.hub_id == "hub_1", r.ts >= since).scalar_subquery()
        recent = (
            select(r.device_id).where(r.hub_id == "hub_1", r.seq > top - 5000, r.ts >= since).order_by(r.seq.desc())
        )
        page = select(db.readings).where(r.hub_id == "hub_1").order_by(r.seq).limit(5000)
        same = {
            "what we hold: the household's count (mydata.py)": "SELECT count(*) FROM readings WHERE household_id = :h",
            "erasure: a batch of the household's rows (retention.py)": (
                "SELECT hub_id, seq, ts FROM readings WHERE household_id = :h LIMIT 5000"
            ),
            "retention by arrival time, nothing old": (
                "SELECT hub_id, seq, ts FROM readings WHERE received_at < :cut LIMIT 5000"
            ),
        }
        now = {
            "chart page's sensor list, last 7 days (series.sensors)": series._SENSORS.text,
            "Home's newest readings (webapp/homedata.py), per hub": compiled(recent),
            "export, a page (export.py), per hub": compiled(page.where(r.seq > 100_000)),
            **same,
        }
        # The same reads as the release before made them, on its schema (0007: with readings_household_ts).
        before = {
            "chart page's sensor list, last 7 days": (
                "SELECT device_id, quantity, max(ts) FROM readings WHERE household_id = :h AND ts >= :since"
                " GROUP BY device_id, quantity"
            ),
            "Home's newest readings": (
                f"SELECT device_id FROM readings WHERE household_id = :h AND ts >= {NOW - 600}"
                " ORDER BY ts DESC LIMIT 5000"
            ),
            "export, a page": (
                "SELECT * FROM readings WHERE household_id = :h AND (hub_id, seq) > ('hub_1', 100000)"
                " ORDER BY hub_id, seq LIMIT 5000"
            ),
            **same,
        }
        print("\n######## now (0008: no readings_household_ts, readings_received a BRIN)")
        for label, sql in now.items():
            explain(engine, label, sql, h)
        migrate.downgrade(engine, "0007_hub_exports")
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE readings")
        print("\n######## before (0007: readings_household_ts, readings_received a b-tree), the old queries")
        for label, sql in before.items():
            explain(engine, label, sql, h)
        engine.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
