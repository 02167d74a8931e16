"""How soon a hub's long-poll learns of a command queued by another register process: PostgreSQL LISTEN/NOTIFY
(cloud_sync/register/wakeups.py) against the re-read every ``command_poll_interval_s`` it replaces, in one run.

A waiter per command waits as the long-poll does (notification, or a re-read of ``commands`` every 2 s); another
connection commits the command. Printed: commit-to-wake latency, p50 and p99, for both, and the ratio.

    .venv/bin/python bench/register_wakeups.py [--commands 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_sync.register import db
from cloud_sync.register.wakeups import Wakeups
from tests.support.postgres import start_cluster

POLL_S = 2.0


def _queue(engine: Engine, cid: str) -> float:
    with engine.begin() as conn:
        conn.execute(
            insert(db.commands).values(
                id=cid, household_id="hh", hub_id=f"hub_{cid}", kind="restrict", args={}, issued_at=0, issued_by="b"
            )
        )
    return time.perf_counter()


def _pending(engine: Engine, cid: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(db.commands.c.id).where(db.commands.c.id == cid)).first() is not None


async def _one(engine: Engine, w: Wakeups | None, cid: str, rng: random.Random) -> float:
    """Commit-to-wake seconds for one command, queued at a random moment of the waiter's poll cycle."""
    found = asyncio.Event()
    woke = 0.0

    async def long_poll() -> None:
        nonlocal woke
        while not await asyncio.to_thread(_pending, engine, cid):
            if w is not None:
                await w.wait(POLL_S, f"hub_{cid}")
            else:
                await asyncio.sleep(POLL_S)
        woke = time.perf_counter()
        found.set()

    task = asyncio.create_task(long_poll())
    await asyncio.sleep(rng.uniform(0.05, POLL_S))
    committed = await asyncio.to_thread(_queue, engine, cid)
    await found.wait()
    await task
    return max(0.0, woke - committed)


def _pcts(xs: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(xs, n=100, method="inclusive")
    return qs[49] * 1000, qs[98] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=200, help="commands for the LISTEN/NOTIFY figure")
    ap.add_argument("--polled", type=int, default=20, help="commands for the re-read baseline (each up to 2 s)")
    args = ap.parse_args()
    rng = random.Random(17)
    cluster = start_cluster()
    try:
        engine = db.open_engine(cluster.url(cluster.create_database()))
        w = Wakeups(engine, retry_s=POLL_S)
        await w.start()
        notified = [await _one(engine, w, f"n{i}", rng) for i in range(args.commands)]
        polled = [await _one(engine, None, f"p{i}", rng) for i in range(args.polled)]
        w.close()
        engine.dispose()
    finally:
        cluster.stop()
    n50, n99 = _pcts(notified)
    p50, p99 = _pcts(polled)
    print("commit-to-wake of a hub's long-poll, command queued by another connection (measured under load)")
    print(f"  LISTEN/NOTIFY ({len(notified)} commands): p50 {n50:7.1f} ms   p99 {n99:7.1f} ms")
    print(f"  re-read every {POLL_S:.0f} s ({len(polled)} commands): p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    print(f"  ratio (re-read / notify): p50 {p50 / max(n50, 1e-3):.0f}x")


if __name__ == "__main__":
    asyncio.run(main())
