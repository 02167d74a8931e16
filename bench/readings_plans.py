"""The plans of every read of ``readings`` that used ``readings_household_ts`` (dropped by migration 0008), and of
retention by arrival time on the BRIN, on real PostgreSQL with enough rows that the plans are real.

Fills ``--households`` households (one hub, 60 sensors, a reading a minute each over ``--days`` days, spread over
the weekly partitions) into the register's schema at head, ANALYZEs, then prints for each query its plan's nodes
(``EXPLAIN (ANALYZE, BUFFERS)``) and its time. What to look for: no ``Seq Scan`` of a readings partition, buffers
in the tens to thousands (not the household's millions of rows).

Run: ``.venv/bin/python bench/readings_plans.py [--households 3] [--days 14]``. Not a test: it prints plans.
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

from sqlalchemy import Engine, select, text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from cloud_sync.register import db, partitions, series  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

NOW = 1_764_000_000.0
SENSORS = 60


def fill(engine: Engine, households: int, days: int) -> int:
    with engine.begin() as conn:
        partitions.ensure_partitions(conn, NOW, 183)
        for h in range(households):
            conn.execute(db.households.insert(), [{"id": f"hh_{h}", "name": "x", "created_at": NOW}])
            hub = {"id": f"hub_{h}", "household_id": f"hh_{h}", "name": "", "enrolled_at": NOW, "cert_sha256": "x"}
            conn.execute(db.hubs.insert(), [{**hub, "revoked": False}])
    n = 0
    minutes = days * 1440
    for h in range(households):
        for chunk in range(0, minutes, 1440):
            rows = [
                (f"hub_{h}", m * SENSORS + s, f"hh_{h}", f"zigbee:{s:02d}", ("temperature", "humidity")[s % 2],
                 20.0 + s / 10, NOW - (minutes - m) * 60.0, NOW - (minutes - m) * 60.0 + 5, "")
                for m in range(chunk, min(chunk + 1440, minutes))
                for s in range(SENSORS)
            ]  # fmt: skip
            with engine.begin() as conn:
                n += partitions.copy_readings(conn, rows, direct=True)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE readings")
    return n


def explain(engine: Engine, label: str, sql: str, params: dict[str, Any], *, analyze: bool = True) -> None:
    options = "ANALYZE, BUFFERS, COSTS OFF, TIMING OFF" if analyze else "COSTS OFF"
    with engine.connect() as conn:
        plan = [str(r[0]) for r in conn.execute(text(f"EXPLAIN ({options}) {sql}"), params)]
        conn.rollback()  # a DELETE explained with ANALYZE ran: undo it
    nodes = [line for line in plan if "->" in line or not line.startswith(" ")]
    scans = sorted(
        {m.group(0) for line in plan for m in [re.search(r"(Seq|Index Only|Index|Bitmap Heap) Scan", line)] if m}
    )
    buffers = next((line.strip() for line in plan if "Buffers:" in line), "")
    took = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
    print(f"\n== {label}: scans {', '.join(scans) or '-'}; {buffers}; {took}")
    for line in nodes[:14]:
        print("   " + line.rstrip()[:150])
    if len(nodes) > 14:
        print(f"   … {len(nodes) - 14} more nodes")


def compiled(stmt: Any) -> str:
    return str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=3)
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args()
    cluster = start_cluster()
    try:
        engine = db.open_engine(cluster.url(cluster.create_database()))
        t = time.perf_counter()
        n = fill(engine, args.households, args.days)
        print(f"{n:,} readings in {args.households} households ({n // args.households:,} each), "
              f"{time.perf_counter() - t:.0f} s to fill")  # fmt: skip
        with engine.connect() as conn:
            idx = conn.execute(
                text("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'readings'::regclass")
            )
            print("indexes on readings:", ", ".join(sorted(idx.scalars())))
        h = {"h": "hh_1", "since": NOW - 7 * 86_400}
        explain(engine, "chart page's sensor list, last 7 days (series.sensors)", series._SENSORS.text, h)
        explain(engine, "chart page's sensor list, 6 months", series._SENSORS.text, {**h, "since": NOW - 183 * 86_400})
        r = db.readings.c
        recent = (
            select(r.device_id)
            .where(r.hub_id == "hub_1", r.household_id == "hh_1", r.ts >= NOW - 600)
            .order_by(r.seq.desc())
            .limit(5000)
        )
        explain(engine, "Home's newest readings of a hub (webapp/homedata.py)", compiled(recent), {})
        page = select(db.readings).where(r.hub_id == "hub_1", r.household_id == "hh_1").order_by(r.seq).limit(5000)
        explain(engine, "export, first page (export.py)", compiled(page), {})
        explain(engine, "export, a later page", compiled(page.where(r.seq > 500_000)), {})
        count = "SELECT count(*) FROM readings WHERE household_id = :h"
        explain(engine, "what we hold: the household's count (mydata.py)", count, h)
        erase = "SELECT hub_id, seq, ts FROM readings WHERE household_id = :h LIMIT 5000"
        explain(engine, "erasure: a batch of the household's rows (retention.py)", erase, h)
        explain(engine, "erasure: the delete", "DELETE FROM readings WHERE household_id = :h", h, analyze=False)
        old = "SELECT hub_id, seq, ts FROM readings WHERE received_at < :cut LIMIT 5000"
        explain(engine, "retention by arrival time, nothing old (the BRIN)", old, {"cut": NOW - 183 * 86_400})
        explain(engine, "retention by arrival time, a day old", old, {"cut": NOW - (args.days - 1) * 86_400})
        engine.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
