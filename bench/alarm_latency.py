"""Alarm latency benchmark (issue 4): a smoke alarm from accepted on the hub to acknowledged by the register.

Prints, in one run, p50 / p99 / max over ``--alarms`` (default 200) smoke events of the time from
``store.add_event`` returning (the alarm is committed on the hub: *accepted*) to the uplink's alarm-lane cursor
reaching its sequence (the register committed it and acknowledged it), in two situations:

- idle: nothing else to send;
- backlog: while the readings lane drains a ``--backlog`` (default 1,000,000) reading backlog buffered offline; only
  alarms acknowledged while readings were still waiting count (the run says how many that was).

Target: p99 < 100 ms in both. Alarms are raised one at a time, each after the previous one was acknowledged plus a
random 10-40 ms pause, alternating ``smoke`` and ``clear`` as a detector does. The time ``add_event`` itself took
(the hub's commit) is printed beside it for information.

The hub side (store and uplink) runs in this process's event loop, as in the daemon; the register runs as its own
process (``kotihub-register serve``, SQLite), so it shares no GIL with the hub. The moment of acknowledgement is
taken where the uplink moves its cursor (it then calls ``store.mark_synced``, which this benchmark wraps to note the
time: no polling).

Run: ``.venv/bin/python bench/alarm_latency.py [--alarms N] [--backlog N]``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from register_proc import RegisterProcess, fill_store
from store_ingest import make_readings

from cloud_sync.uplink import HubIdentity, Uplink
from gateway import crypto
from gateway.config import UplinkSection
from gateway.model import Event, EventKind, Lane
from gateway.store import Store

TARGET_P99_MS = 100.0
DETECTOR = "mqtt:0x00158d000ab1c2d3"


def open_store(hub_dir: Path) -> Store:
    return Store.open(hub_dir, crypto.load_master_key(hub_dir), crypto.choose_algorithm("auto"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class AckClock:
    """Wraps ``store.mark_synced`` to note when the uplink's alarm cursor passes each sequence."""

    def __init__(self, store: Store) -> None:
        self.acked = 0
        self.changed = asyncio.Event()
        self.at: dict[int, float] = {}
        original = store.mark_synced

        def mark_synced(lane: Any, upto_seq: int) -> Any:
            if Lane(lane) is Lane.ALARM and upto_seq > self.acked:
                now = time.perf_counter()
                for seq in range(self.acked + 1, upto_seq + 1):
                    self.at[seq] = now
                self.acked = upto_seq
                self.changed.set()
            return original(lane, upto_seq)

        store.mark_synced = mark_synced  # type: ignore[method-assign]

    async def wait(self, seq: int, timeout: float = 30.0) -> float:
        async with asyncio.timeout(timeout):
            while self.acked < seq:
                self.changed.clear()
                await self.changed.wait()
        return self.at[seq]


async def raise_alarms(
    store: Store, uplink: Uplink, clock: AckClock, count: int, rng: random.Random, backlog_left: Any = None
) -> tuple[list[float], list[float], list[float], int]:
    """Returns (accept-to-ack ms, add_event ms, the uplink's request round trip ms, how many were acknowledged while
    the backlog still drained)."""
    latencies, commits, rtts, during = [], [], [], 0
    for i in range(count):
        event = Event(
            device_id=DETECTOR, kind=EventKind.SMOKE, state="smoke" if i % 2 == 0 else "clear", ts=time.time()
        )
        t0 = time.perf_counter()
        seq = await store.add_event(event)
        accepted = time.perf_counter()
        acked = await clock.wait(seq)
        latencies.append((acked - accepted) * 1000)
        commits.append((accepted - t0) * 1000)
        # The uplink sets latency_ms (encode + POST + the register's commit + ack) right after it moved the cursor.
        rtts.append(uplink.status[Lane.ALARM.value].latency_ms or 0.0)
        if backlog_left is not None and backlog_left() > 0:
            during += 1
        await asyncio.sleep(rng.uniform(0.01, 0.04))
    return latencies, commits, rtts, during


async def run(args: argparse.Namespace, reg: RegisterProcess, hub_dir: Path) -> dict[str, Any]:
    config = UplinkSection(
        enabled=True, register_url=reg.url, batch_items=args.batch_items, backoff_initial=0.05, backoff_max=1.0
    )
    rng = random.Random(7)
    out: dict[str, Any] = {}
    async with open_store(hub_dir) as store:
        clock = AckClock(store)
        uplink = Uplink(store, config, HubIdentity(hub_dir))

        # ---- idle --------------------------------------------------------------------------------------------
        task = asyncio.create_task(uplink.run())
        try:
            # A first alarm opens the lane's connection (TLS handshake); not counted.
            await clock.wait(await store.add_event(Event(device_id=DETECTOR, kind=EventKind.SMOKE, state="test",
                                                         ts=time.time())))  # fmt: skip
            out["idle"] = await raise_alarms(store, uplink, clock, args.alarms, rng)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        # ---- backlog -----------------------------------------------------------------------------------------
        t = time.perf_counter()
        await fill_store(store, make_readings(args.backlog))
        out["fill_s"] = time.perf_counter() - t
        readings = uplink.status[Lane.READINGS.value]
        base = readings.cursor
        target = (await store.depth())[Lane.READINGS.value] + base
        uplink = Uplink(store, config, HubIdentity(hub_dir))
        readings = uplink.status[Lane.READINGS.value]
        task = asyncio.create_task(uplink.run())
        start = time.perf_counter()
        try:
            await asyncio.sleep(0.5)  # let the drain get going (connection up, first batches in flight)
            out["backlog_at_start"] = target - readings.cursor
            out["backlog"] = await raise_alarms(
                store, uplink, clock, args.alarms, rng, lambda: target - readings.cursor
            )
            out["backlog_left"] = target - readings.cursor
            while readings.cursor < target:  # noqa: ASYNC110 -- the cursor is a plain int the uplink moves
                await asyncio.sleep(0.05)
            out["drain_s"] = time.perf_counter() - start
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--batch-items", type=int, default=UplinkSection().batch_items, help="uplink.batch_items")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="bench-alarm-") as tmp:
        root = Path(tmp)
        reg = RegisterProcess(root / "register")
        reg.start()
        try:
            hub_id = reg.enroll(root / "hub")
            out = asyncio.run(run(args, reg, root / "hub"))
            held = reg.count(hub_id, "events", "alarm")
        finally:
            reg.stop()
    if held != 2 * args.alarms + 1:
        print(f"warning: the register holds {held} alarms, expected {2 * args.alarms + 1}", file=sys.stderr)

    print(
        f"alarms: {args.alarms} per case, one at a time; backlog {args.backlog:,} readings "
        f"({out['backlog_at_start']:,} still waiting when the alarms started, {out['backlog_left']:,} after the last; "
        f"drained in {out['drain_s']:.1f} s = {args.backlog / out['drain_s']:,.0f} readings/s); uplink.batch_items "
        f"{args.batch_items}; register on SQLite in its own process"
    )
    print()
    print(f"{'accepted -> acknowledged, ms':<34}{'p50':>8}{'p99':>8}{'max':>8}{'target p99':>12}{'ratio':>7}")
    for name in ("idle", "backlog"):
        lat, _, _, during = out[name]
        label = "idle" if name == "idle" else f"backlog draining ({during} of {len(lat)} during)"
        p99 = pct(lat, 99)
        print(f"{label:<34}{statistics.median(lat):>8.1f}{p99:>8.1f}{max(lat):>8.1f}{'< 100':>12}"
              f"{p99 / TARGET_P99_MS:>7.2f}")  # fmt: skip
    print()
    print("for information, ms p50 / p99 / max:")
    for name in ("idle", "backlog"):
        _, commit, rtt, _ = out[name]
        print(f"  {name:<8} add_event (the hub's commit) {statistics.median(commit):6.1f} / {pct(commit, 99):6.1f} / "
              f"{max(commit):6.1f};  of accepted->acked, the uplink's request (encode, POST, register commit, ack) "
              f"{statistics.median(rtt):6.1f} / {pct(rtt, 99):6.1f} / {max(rtt):6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
