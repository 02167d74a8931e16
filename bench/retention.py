"""Retention benchmark (issue: retention and the household's rights).

With N readings (default 10 million) spread evenly over 7 months, a retention run that expires the oldest month:
prints its duration and the worst ingest stall while it runs — the longest time an alarm (``add_event``, committed
at once) took while a writer kept submitting one every 5 ms — beside the baseline: the same readings in a plain
one-row-per-reading SQLite table (WAL, synchronous=FULL, secure_delete=ON, as the hub needs) purged with one
``DELETE ... WHERE ts < ?`` transaction, with the same concurrent writer measuring its stall. Target: stall <= 50 ms.

Run: ``.venv/bin/python bench/retention.py [--readings N]``. Not a test: figures vary with the machine and the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from gateway import crypto
from gateway.model import Event, EventKind, Quantity, Reading
from gateway.retention import BUILD_TIME, ClockTrust, Retention
from gateway.store import Store

DAY = 86_400.0
MONTH = 30 * DAY
NOW = BUILD_TIME + 365 * DAY


def timeline(n: int) -> list[float]:
    span = 7 * MONTH
    start = NOW - span
    return [start + span * i / n for i in range(n)]


def make_batch(stamps: list[float], rng: random.Random) -> list[Reading]:
    devices = [f"mqtt:0x00158d00{i:08x}" for i in range(40)]
    return [Reading(rng.choice(devices), Quantity.TEMPERATURE, round(rng.uniform(15, 25), 2), ts) for ts in stamps]


async def run_ours(directory: Path, n: int) -> tuple[float, float, int]:
    rng = random.Random(5)
    stamps = timeline(n)
    store = Store.open(
        directory,
        os.urandom(32),
        crypto.choose_algorithm("auto"),
        commit_interval=0.2,
        commit_max_items=20_000,
        max_pending_readings=100_000,
    )
    async with store:
        accepted = []
        for i in range(0, n, 20_000):
            await store.wait_for_room()
            accepted.append(store.submit_readings(make_batch(stamps[i : i + 20_000], rng)))
        await asyncio.gather(*accepted)
        clock = ClockTrust(wall=lambda: NOW)
        retention = Retention(store, days=int((7 * MONTH - MONTH) // DAY), clock=clock)
        worst = 0.0
        done = asyncio.Event()

        async def alarms() -> None:
            nonlocal worst
            while not done.is_set():
                started = time.perf_counter()
                await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="test", ts=NOW))
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.005)

        task = asyncio.create_task(alarms())
        started = time.perf_counter()
        report = await retention.run_once(force_time=True)
        duration = time.perf_counter() - started
        done.set()
        await task
    return duration, worst, report.frames_deleted


def run_baseline(directory: Path, n: int) -> tuple[float, float, int]:
    rng = random.Random(5)
    stamps = timeline(n)
    path = directory / "baseline.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, device_id TEXT, quantity TEXT, value REAL, ts REAL)")
    conn.execute("CREATE INDEX readings_ts ON readings (ts)")
    for i in range(0, n, 50_000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO readings (device_id, quantity, value, ts) VALUES (?, ?, ?, ?)",
            [(r.device_id, r.quantity.value, r.value, r.ts) for r in make_batch(stamps[i : i + 50_000], rng)],
        )
        conn.execute("COMMIT")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL)")
    worst = 0.0
    done = threading.Event()

    def writer() -> None:
        nonlocal worst
        w = sqlite3.connect(path, isolation_level=None, timeout=600)
        w.execute("PRAGMA synchronous=FULL")
        while not done.is_set():
            started = time.perf_counter()
            w.execute("INSERT INTO events (ts) VALUES (?)", (time.time(),))
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.005)
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    cutoff = NOW - 6 * MONTH
    started = time.perf_counter()
    deleted = conn.execute("DELETE FROM readings WHERE ts < ?", (cutoff,)).rowcount
    duration = time.perf_counter() - started
    done.set()
    thread.join()
    conn.close()
    return duration, worst, deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        d = Path(tmp)
        (d / "hub").mkdir()
        ours = asyncio.run(run_ours(d / "hub", args.readings))
        base = run_baseline(d, args.readings)
    print(f"{args.readings:,} readings over 7 months; one month expires")
    print(f"kotihub retention : {ours[0]:7.2f} s, worst alarm stall {ours[1] * 1000:7.1f} ms  ({ours[2]} frames)")
    print(f"DELETE baseline   : {base[0]:7.2f} s, worst insert stall {base[1] * 1000:7.1f} ms  ({base[2]:,} rows)")
    print(f"stall ratio (baseline/ours): {base[1] / max(ours[1], 1e-9):.1f}x   (target: ours <= 50 ms)")


if __name__ == "__main__":
    main()
