"""Store ingest benchmark (issue: foundation).

Prints, in one run:
- accepted readings per second through the kotihub store (encrypted, durable: WAL + synchronous=FULL, group commit),
- the same readings inserted with plain ``sqlite3`` ``executemany`` into a one-row-per-reading table, unencrypted,
  with the same durability and batch size (the baseline), and the ratio of the two;
- bytes written to disk per accepted reading for both, from ``/proc/self/io`` ``write_bytes`` (which counts what
  reached the block layer, checkpoints included: each run ends with ``wal_checkpoint(TRUNCATE)``).

Run: ``.venv/bin/python bench/store_ingest.py [--readings N]``. Not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from gateway import crypto
from gateway.model import Quantity, Reading
from gateway.store import Store


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def make_readings(n: int, seed: int = 1) -> list[Reading]:
    """Readings as a home produces them: 60 devices, a few quantities each, values drifting at 2 decimals."""
    rng = random.Random(seed)
    devices = [f"mqtt:0x00158d00{rng.getrandbits(32):08x}" for _ in range(60)]
    quantities = [Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.PRESSURE, Quantity.BATTERY]
    level: dict[tuple[str, Quantity], float] = {}
    ts = time.time() - n * 0.01
    out = []
    for _ in range(n):
        dev, q = rng.choice(devices), rng.choice(quantities)
        value = level.get((dev, q), rng.uniform(15, 60)) + rng.uniform(-0.1, 0.1)
        level[(dev, q)] = value
        ts += 0.01
        out.append(Reading(dev, q, round(value, 2), round(ts, 3)))
    return out


async def run_store(readings: list[Reading], directory: Path, batch: int, chunk: int) -> tuple[float, int]:
    key = os.urandom(32)
    store = Store.open(
        directory,
        key,
        crypto.choose_algorithm("auto"),
        commit_interval=1.0,
        commit_max_items=batch,
        max_pending_readings=batch * 4,
    )
    before = write_bytes()
    start = time.perf_counter()
    async with store:
        futures = []
        for i in range(0, len(readings), chunk):
            await store.wait_for_room()
            futures.append(store.submit_readings(readings[i : i + chunk]))
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        await store.run_write(lambda conn: None)
    with sqlite3.connect(directory / "kotihub.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return elapsed, write_bytes() - before


def run_baseline(readings: list[Reading], directory: Path, batch: int) -> tuple[float, int]:
    conn = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, quantity TEXT NOT NULL,"
        " value REAL NOT NULL, ts REAL NOT NULL)"
    )
    before = write_bytes()
    start = time.perf_counter()
    for i in range(0, len(readings), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO readings (device_id, quantity, value, ts) VALUES (?, ?, ?, ?)",
            [(r.device_id, r.quantity.value, r.value, r.ts) for r in readings[i : i + batch]],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed, write_bytes() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=5_000, help="readings per commit, for both")
    parser.add_argument("--chunk", type=int, default=50, help="readings per submit, as a driver hands them over")
    args = parser.parse_args()
    readings = make_readings(args.readings)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        d = Path(tmp)
        (d / "store").mkdir()
        base_s, base_b = run_baseline(readings, d, args.batch)
        ours_s, ours_b = asyncio.run(run_store(readings, d / "store", args.batch, args.chunk))
    n = len(readings)
    print(f"readings: {n}, commit batch {args.batch}, cipher {crypto.choose_algorithm('auto').name}")
    print(f"kotihub store   : {n / ours_s:12,.0f} readings/s  {ours_b / n:7.1f} bytes written/reading")
    print(f"sqlite3 baseline: {n / base_s:12,.0f} readings/s  {base_b / n:7.1f} bytes written/reading")
    print(f"ratio (store/baseline rate): {base_s / ours_s:.2f}   (target >= 1.0; bytes/reading target <= 40)")


if __name__ == "__main__":
    main()
