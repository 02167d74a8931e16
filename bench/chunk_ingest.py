"""Readings ingest on PostgreSQL with packed chunks (cloud_sync/register/chunks.py) against the path before them,
measured in the same run: register Python CPU, PostgreSQL CPU and bytes on disk per 100,000 readings, readings/s.

Three ways, each on a database of its own in one PostgreSQL 15 cluster, the register's own ``ingest.ingest_body``
(what a request does after TLS and HTTP: the hub's admission, decompress, decode, store, commit; bodies encoded
before the clock starts), a transaction per batch:

* **before**: the database without chunks (``chunks.available`` is False): the path of the release before;
* **rows**: chunks readable, writing off (``--no-readings-chunks``): every batch takes the hub's lock in its
  admission statement and reads its chunk mark, one statement more;
* **chunks**: writing on (the default since the release after 0012);
* **columns**: writing on, the batches sent as a hub sends them once the register says it takes columns
  (``protocol.ReadingColumns`` where a sensor has several readings: the catch-up; the steady batches as items).

It also prints what encoding a batch costs the hub, as items and as columns (``encode_batch`` and its grouping).

Three shapes: **catch-up** (batches of 5,000 readings of 60 sensors, 83 a sensor: the uplink's ``batch_items``),
**catch-up 20k** (batches of 20,000, 333 a sensor: what the uplink's batches grow to, ``batch_items_max``) and
**steady** (batches of 60, one reading a sensor: stays rows). The ways alternate in rounds so the machine's other
load falls on all alike.

Run: ``.venv/bin/python bench/chunk_ingest.py [--rounds 4] [--batches 10]``. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from fleet import postgres_cpu_s  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.register import chunks, db, ingest  # noqa: E402
from cloud_sync.register.auth import HubIdentity  # noqa: E402
from cloud_sync.register.registry import Registry  # noqa: E402
from cloud_sync.register.settings import Settings  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

SENSORS = 60
T0 = time.time() - 20 * 86_400


def wire_items(first: int, n: int) -> list[p.Item]:
    """Items as the hub's uplink has them: bodies as dicts."""
    items = []
    for s in range(first, first + n):
        t = T0 + (s // SENSORS) * 30.0
        reading = {"device_id": f"zigbee2mqtt:0x00158d000{s % SENSORS:07x}", "quantity": "temperature",
                   "value": 20.0 + (s % 97) / 10, "ts": t}  # fmt: skip
        items.append(p.Item(s, t, reading))
    return items


def body(hub: HubIdentity, first: int, n: int, *, columns: bool = False) -> tuple[bytes, bool]:
    """The body, and whether it went as columns: with ``columns``, where they pay, as the hub's client decides
    (``protocol.columns_pay``: a steady batch still goes as items)."""
    items = wire_items(first, n)
    as_columns = p.reading_columns(hub.hub_id, items)
    if columns and p.columns_pay(as_columns):
        return p.encode_batch(as_columns), True
    return p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="readings", items=items)), False


def hub_encoding_ms(n: int = 5_000, times: int = 20) -> tuple[float, float]:
    """CPU ms to encode one batch of ``n`` readings as items and as columns, on this machine."""
    items = wire_items(1, n)
    out = []
    for columns in (False, True):
        t0 = time.process_time()
        for _ in range(times):
            if columns:
                p.encode_batch(p.reading_columns("hub", items))
            else:
                p.encode_batch(p.IngestBatch(hub_id="hub", lane="readings", items=items))
        out.append((time.process_time() - t0) / times * 1000)
    return out[0], out[1]


def size(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r'"
            " AND (c.relname LIKE 'readings%' OR c.relname LIKE 'reading\\_chunks%')"
        ).fetchone()
    return int(row[0] or 0) if row else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument(
        "--batches",
        type=int,
        default=10,
        help="catch-up batches of 5,000 per way and round (a quarter as many of 20,000)",
    )
    ap.add_argument("--steady", type=int, default=200, help="steady batches of 60 per way and round")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    cluster = start_cluster()
    figures: dict[tuple[str, str], dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ways: dict[str, Any] = {}
            for way in ("before", "rows", "chunks", "columns"):
                name = cluster.create_database()
                writes = way in ("chunks", "columns")
                reg = Registry(Settings(state_dir=Path(tmp) / way, db_url=cluster.url(name), readings_chunks=writes))
                household = reg.create_household("koti", actor="bench")
                hub = HubIdentity(hub_id=f"hub-{way}", household_id=household, cert_sha256="0" * 64)
                with reg.engine.begin() as conn:
                    conn.execute(
                        insert(db.hubs).values(
                            id=hub.hub_id, household_id=household, cert_sha256=hub.cert_sha256, enrolled_at=T0
                        )
                    )
                ways[way] = (reg, hub, cluster.admin_dsn(name))
                if way == "before":  # the path of the release before: no chunks in this database
                    with reg.engine.begin() as conn:
                        conn.exec_driver_sql("DROP TABLE reading_chunks, hub_chunk_marks")
                    chunks.forget(reg.engine)
            seq = dict.fromkeys(ways, 1)
            for _ in range(args.rounds):
                shapes = (
                    ("catch-up", 5_000, args.batches),
                    ("catch-up 20k", 20_000, max(1, args.batches // 4)),
                    ("steady", SENSORS, args.steady),
                )
                for shape, n, count in shapes:
                    for way, (reg, hub, _dsn) in ways.items():
                        columns = way == "columns"
                        bodies = [body(hub, seq[way] + i * n, n, columns=columns) for i in range(count)]
                        seq[way] += n * count
                        cpu0, pg0, t0 = time.process_time(), postgres_cpu_s(cluster), time.perf_counter()
                        for b, as_columns in bodies:
                            ingest.ingest_body(reg, hub, "readings", b, columns=as_columns)
                        cpu, pg, wall = (
                            time.process_time() - cpu0,
                            postgres_cpu_s(cluster) - pg0,
                            time.perf_counter() - t0,
                        )
                        f = figures.setdefault((shape, way), {"cpu": 0.0, "pg": 0.0, "wall": 0.0, "n": 0.0})
                        f["cpu"] += cpu
                        f["pg"] += pg
                        f["wall"] += wall
                        f["n"] += n * count
            sizes = {way: size(dsn) / (seq[way] - 1) for way, (_r, _h, dsn) in ways.items()}
            for reg, _hub, _dsn in ways.values():
                reg.close()
    finally:
        cluster.stop()
    print(f"per 100,000 readings; {args.rounds} rounds, the ways alternating")
    print(f"{'shape':14}{'way':8}{'register CPU s':>16}{'PostgreSQL CPU s':>18}{'readings/s':>12}{'vs before':>22}")
    for (shape, way), f in figures.items():
        per = 100_000 / f["n"]
        b = figures[(shape, "before")]
        ratio = f"{f['cpu'] / b['cpu']:.2f} / {f['pg'] / b['pg']:.2f}"
        print(
            f"{shape:14}{way:8}{f['cpu'] * per:16.3f}{f['pg'] * per:18.3f}{f['n'] / f['wall']:12,.0f}"
            f"{ratio:>22}  (register / PostgreSQL)"
        )
    print("bytes per reading on disk (both shapes, all partitions and indexes): " + ", ".join(
        f"{way} {b:.0f}" for way, b in sizes.items()))  # fmt: skip
    as_items, as_columns = hub_encoding_ms()
    print(f"the hub's encoding of a batch of 5,000: items {as_items:.2f} ms, columns {as_columns:.2f} ms CPU"
          f" ({as_columns / as_items:.2f})")  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
