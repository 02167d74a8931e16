"""Readings linger benchmark (issue 17 leftovers): how many requests a home's hub sends the register per minute in
steady state, without the linger (each store commit's readings at once: the old behaviour, ``readings_linger_s =
0``) and with it (``--linger``, default the shipped ``uplink.readings_linger_s``), in the same run.

A simulated home: ``--sensors`` (60) sensors each reporting every ``--period`` (30 s) seconds, at phases drawn from a
seeded RNG, submitted to a real encrypted store one reading at a time as drivers do, with the store's shipped group
commit (``store.commit_interval``); a real uplink sends them over mTLS to the register, which runs as its own
process (``kotihub-register serve``, SQLite). Each mode gets a hub of its own and ``--duration`` seconds. Counted at
the register (its Prometheus counters): readings ingest requests, every request of the hub (command long-polls and
heartbeats included), and the register process's CPU seconds; at the hub, how long readings took from submission to
the register's acknowledgement.

Run: ``flock /tmp/kotihub-bench.lock .venv/bin/python bench/readings_linger.py [--duration S]``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path

import msgspec
import requests
from prometheus_client.parser import text_string_to_metric_families
from register_proc import RegisterProcess, cpu_s

from cloud_sync.uplink import HubIdentity, Uplink
from gateway import crypto
from gateway.config import StoreSection, UplinkSection
from gateway.model import Lane, Quantity, Reading
from gateway.store import Store


def open_store(hub_dir: Path) -> Store:
    return Store.open(
        hub_dir,
        crypto.load_master_key(hub_dir),
        crypto.choose_algorithm("auto"),
        commit_interval=StoreSection().commit_interval,
    )


def scrape(reg: RegisterProcess, token: str) -> dict[str, float]:
    s = requests.Session()
    s.trust_env = False
    body = s.get(
        f"{reg.url}/metrics", headers={"Authorization": f"Bearer {token}"}, verify=str(reg.ca_file), timeout=30
    ).text
    out = {"readings_batches": 0.0, "requests": 0.0}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "kotihub_register_ingest_batches_total" and sample.labels.get("lane") == "readings":
                out["readings_batches"] += sample.value
            elif sample.name == "kotihub_register_requests_total" and sample.labels.get("route") != "/metrics":
                out["requests"] += sample.value
    return out


async def home(store: Store, sensors: int, period: float, duration: float, rng: random.Random) -> list[float]:
    """Submits each sensor's reading at its time; returns the monotonic time each was submitted (by sequence)."""
    phases = sorted((rng.uniform(0, period), i) for i in range(sensors))
    start = time.monotonic()
    submitted: list[float] = []
    cycle = 0
    while True:
        for phase, i in phases:
            due = start + cycle * period + phase
            if due - start >= duration:
                return submitted
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # the sensors' pace
            store.submit_readings([Reading(f"zigbee:{i:02d}", Quantity.TEMPERATURE, 21.0 + rng.random(), time.time())])
            submitted.append(time.monotonic())
        cycle += 1


async def run_mode(
    reg: RegisterProcess, token: str, hub_dir: Path, linger: float, args: argparse.Namespace
) -> dict[str, float]:
    config = UplinkSection(enabled=True, register_url=reg.url, readings_linger_s=linger)
    async with open_store(hub_dir) as store:
        uplink = Uplink(store, config, HubIdentity(hub_dir))
        task = asyncio.create_task(uplink.run())
        status = uplink.status[Lane.READINGS.value]
        acked_at: dict[int, float] = {}
        expected = 0
        caught_up = asyncio.Event()

        async def watch() -> None:
            """When each cursor was first seen: the register acknowledged everything up to it."""
            while True:
                await uplink.progress.wait()
                uplink.progress.clear()
                acked_at.setdefault(status.cursor, time.monotonic())
                if expected and status.cursor >= expected:
                    caught_up.set()

        watcher = asyncio.create_task(watch())
        try:
            before, reg_cpu = await asyncio.to_thread(scrape, reg, token), cpu_s(reg.pid)
            t0 = time.monotonic()
            submitted = await home(store, args.sensors, args.period, args.duration, random.Random(args.seed))
            minutes = (time.monotonic() - t0) / 60
            after, reg_cpu = await asyncio.to_thread(scrape, reg, token), cpu_s(reg.pid) - reg_cpu
            expected = len(submitted)
            if status.cursor >= expected:
                caught_up.set()
            with contextlib.suppress(TimeoutError):  # the last readings' delays; a miss only leaves them out
                async with asyncio.timeout(60):
                    await caught_up.wait()
        finally:
            watcher.cancel()
            task.cancel()
            for t in (watcher, task):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
    # A reading's delay: from its submission to the first cursor at or past its sequence.
    cursors = sorted(acked_at.items())
    delays = []
    for seq, at in enumerate(submitted, start=1):
        acked = next((t for c, t in cursors if c >= seq), None)
        if acked is not None:
            delays.append(acked - at)
    delays.sort()
    return {
        "readings": len(submitted),
        "readings_req_per_min": (after["readings_batches"] - before["readings_batches"]) / minutes,
        "all_req_per_min": (after["requests"] - before["requests"]) / minutes,
        "register_cpu_ms_per_min": reg_cpu * 1000 / minutes,
        "delay_p50": delays[len(delays) // 2] if delays else float("nan"),
        "delay_max": delays[-1] if delays else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per mode (default 120)")
    parser.add_argument("--sensors", type=int, default=60)
    parser.add_argument("--period", type=float, default=30.0, help="seconds between a sensor's readings")
    parser.add_argument(
        "--linger",
        type=float,
        nargs="+",
        default=[UplinkSection().readings_linger_s],
        help="one or more lingers, each run as a mode of its own after the baseline (default: the shipped one)",
    )
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="bench-linger-") as tmp:
        root = Path(tmp)
        reg = RegisterProcess(root / "register")
        reg.start()
        try:
            token = reg.cli("api-token", "--role", "admin").split()[-1]
            results = {}
            for name, linger in (("baseline", 0.0), *((f"linger {x:g} s", x) for x in args.linger)):
                hub_dir = root / f"hub-{name}"
                reg.enroll(hub_dir)
                results[name] = asyncio.run(run_mode(reg, token, hub_dir, linger, args))
        finally:
            reg.stop()
    rate = args.sensors / args.period * 60
    print(f"a home: {args.sensors} sensors every {args.period:.0f} s = {rate:.0f} readings/min; {args.duration:.0f} s")
    lingers = ", ".join(f"{x:g}" for x in args.linger)
    print(f"store commit_interval {StoreSection().commit_interval} s; lingers {lingers} s (baseline: 0, the old)")
    print()
    head = ("readings req/min", "all req/min", "register CPU ms/min", "delay p50 s", "delay max s")
    print(f"{'':14}" + "".join(f"{h:>21}" for h in head))
    for name, r in results.items():
        cols = (r["readings_req_per_min"], r["all_req_per_min"], r["register_cpu_ms_per_min"])
        print(f"{name:14}" + "".join(f"{c:>21.1f}" for c in cols) + f"{r['delay_p50']:>21.2f}{r['delay_max']:>21.2f}")
    base = results["baseline"]
    print()
    for name, new in results.items():
        if name == "baseline":
            continue
        requests, base_requests = new["readings_req_per_min"], base["readings_req_per_min"]
        print(
            f"{name}: readings requests {requests:.1f}/min vs {base_requests:.1f}/min, ratio"
            f" {requests / base_requests:.2f};"
            f" all requests ratio {new['all_req_per_min'] / base['all_req_per_min']:.2f};"
            f" register CPU ratio {new['register_cpu_ms_per_min'] / base['register_cpu_ms_per_min']:.2f}"
        )
    print(msgspec.json.encode({"args": vars(args), "results": results}).decode())


if __name__ == "__main__":
    main()
