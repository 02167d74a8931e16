"""Uplink catch-up benchmark (issue 4): how fast a hub that was offline empties a backlog into the register.

Prints, in one run:

- the uplink's catch-up rate: ``--readings`` (default 1,000,000) readings buffered in the hub's encrypted store while
  the register was down; then the register is up on loopback (SQLite, its default) and the uplink starts; the clock
  runs from the uplink's start until the readings lane's cursor has reached the last sequence, i.e. every reading
  is acknowledged after the register's commit (and the register is then checked to hold them all, once each);
- the ceiling: the register's raw ingest rate for the same batches (the same items, split the same way, encoded
  with ``cloud_sync.protocol.encode_batch`` beforehand) POSTed one after the other over one ``requests.Session``
  carrying a hub certificate, as fast as the register answers, to a fresh register;
- the ratio, beside the targets (>= 50,000 readings/s and >= 70 % of the ceiling), and the CPU seconds the hub
  side (this process) and the register process spent, which shows where the time goes.

The register runs as its own process (``kotihub-register serve``), not in a thread of this one: in a thread it
would share the GIL with the uplink and both figures would measure the contention. Each of the two measurements gets
its own fresh register (state directory) so that neither inherits the other's rows.

Run: ``.venv/bin/python bench/uplink_catchup.py [--readings N] [--batch-items N]``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

import msgspec
import requests
from register_proc import RegisterProcess, cpu_s, fill_store
from store_ingest import make_readings

from cloud_sync import protocol as p
from cloud_sync.uplink import HubIdentity, Uplink, split_by_bytes
from gateway import crypto
from gateway.config import UplinkSection
from gateway.model import Lane, Reading
from gateway.store import OutboxItem, Store

TARGET_RATE = 50_000.0
TARGET_SHARE = 0.70


def open_store(hub_dir: Path) -> Store:
    return Store.open(hub_dir, crypto.load_master_key(hub_dir), crypto.choose_algorithm("auto"))


async def catch_up(store: Store, config: UplinkSection, hub_dir: Path, n: int, reg_pid: int) -> dict[str, float]:
    uplink = Uplink(store, config, HubIdentity(hub_dir))
    me, reg0 = cpu_s(os.getpid()), cpu_s(reg_pid)
    start = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    status = uplink.status[Lane.READINGS.value]
    try:
        while status.cursor < n:
            if task.done():
                task.result()
                raise RuntimeError("the uplink stopped")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "elapsed": elapsed,
        "hub_cpu": cpu_s(os.getpid()) - me,
        "register_cpu": cpu_s(reg_pid) - reg0,
    }


async def read_batches(store: Store, batch_items: int, batch_bytes: int) -> list[list[OutboxItem]]:
    """The batches the uplink sends: ``pending`` pages of ``batch_items`` split under ``batch_bytes``."""
    out: list[list[OutboxItem]] = []
    after = 0
    while items := await store.pending(Lane.READINGS, after=after, limit=batch_items):
        out.extend(split_by_bytes(items, batch_bytes))
        after = items[-1].seq
    return out


def post_all(url: str, hub_dir: Path, bodies: list[bytes], reg_pid: int) -> dict[str, float]:
    identity = HubIdentity(hub_dir)
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(identity.cert), str(identity.key))
    session.verify = str(identity.ca)
    me, reg0 = cpu_s(os.getpid()), cpu_s(reg_pid)
    start = time.perf_counter()
    for body in bodies:
        resp = session.post(f"{url}/v1/ingest/readings", data=body, headers=p.INGEST_HEADERS, timeout=60)
        resp.raise_for_status()
    elapsed = time.perf_counter() - start
    session.close()
    return {"elapsed": elapsed, "hub_cpu": cpu_s(os.getpid()) - me, "register_cpu": cpu_s(reg_pid) - reg0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    defaults = UplinkSection()
    parser.add_argument("--batch-items", type=int, default=defaults.batch_items, help="uplink.batch_items")
    parser.add_argument("--batch-bytes", type=int, default=defaults.batch_bytes, help="uplink.batch_bytes")
    args = parser.parse_args()
    n = args.readings
    config = UplinkSection(
        enabled=True,
        register_url="https://127.0.0.1:1",  # replaced below
        batch_items=args.batch_items,
        batch_bytes=args.batch_bytes,
        backoff_initial=0.05,
        backoff_max=1.0,
    )

    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="bench-catchup-") as tmp:
        root = Path(tmp)
        hub_dir, ceiling_hub_dir = root / "hub", root / "hub-ceiling"
        reg = RegisterProcess(root / "register")
        reg.start()
        try:
            hub_id = reg.enroll(hub_dir)
        finally:
            reg.stop()  # offline from here on

        async def fill(readings: list[Reading]) -> float:
            async with open_store(hub_dir) as store:
                return await fill_store(store, readings)

        fill_s = asyncio.run(fill(make_readings(n)))

        reg.start()
        try:
            url_config = msgspec.structs.replace(config, register_url=reg.url)

            async def run_uplink() -> tuple[dict[str, float], list[list[OutboxItem]]]:
                s = open_store(hub_dir)
                async with s:
                    depth = (await s.depth())[Lane.READINGS.value]
                    if depth != n:
                        raise RuntimeError(f"the store holds {depth} readings waiting, expected {n}")
                    result = await catch_up(s, url_config, hub_dir, n, reg.pid)
                    t = time.perf_counter()
                    batches = await read_batches(s, args.batch_items, args.batch_bytes)
                    result["read_s"] = time.perf_counter() - t
                return result, batches

            up, batches = asyncio.run(run_uplink())
            held = reg.count(hub_id)
        finally:
            reg.stop()
        if held != n:
            raise RuntimeError(f"the register holds {held} readings of hub {hub_id}, expected {n}")

        ceiling_reg = RegisterProcess(root / "register-ceiling")
        ceiling_reg.start()
        try:
            ceiling_hub = ceiling_reg.enroll(ceiling_hub_dir)
            t = time.perf_counter()
            bodies = [
                p.encode_batch(
                    p.IngestBatch(hub_id=ceiling_hub, lane="readings", items=[p.Item(i.seq, i.ts, i.body) for i in b])
                )
                for b in batches
            ]
            encode_s = time.perf_counter() - t
            ceiling = post_all(ceiling_reg.url, ceiling_hub_dir, bodies, ceiling_reg.pid)
            held_ceiling = ceiling_reg.count(ceiling_hub)
        finally:
            ceiling_reg.stop()
        if held_ceiling != n:
            raise RuntimeError(f"the ceiling register holds {held_ceiling} readings, expected {n}")

    rate, ceiling_rate = n / up["elapsed"], n / ceiling["elapsed"]
    share = rate / ceiling_rate
    sizes = [len(b) for b in bodies]
    print(
        f"readings: {n:,}, {len(batches)} batches of <= {args.batch_items} items / {args.batch_bytes:,} bytes "
        f"(compressed body {min(sizes) / 1e3:.0f}-{max(sizes) / 1e3:.0f} kB), register on SQLite in its own process"
    )
    print(f"backlog written to the hub store offline in {fill_s:.1f} s ({n / fill_s:,.0f} readings/s)")
    print()
    print(f"{'':34}{'readings/s':>12}{'seconds':>9}{'hub CPU s':>11}{'register CPU s':>16}")
    print(f"{'uplink catch-up (store -> ack)':34}{rate:>12,.0f}{up['elapsed']:>9.1f}{up['hub_cpu']:>11.1f}"
          f"{up['register_cpu']:>16.1f}")  # fmt: skip
    print(f"{'ceiling: same bodies POSTed raw':34}{ceiling_rate:>12,.0f}{ceiling['elapsed']:>9.1f}"
          f"{ceiling['hub_cpu']:>11.1f}{ceiling['register_cpu']:>16.1f}")  # fmt: skip
    print()
    print(f"catch-up rate: {rate:,.0f} readings/s   target >= {TARGET_RATE:,.0f}   ratio {rate / TARGET_RATE:.2f}")
    print(f"share of the ceiling: {share:.0%}   target >= {TARGET_SHARE:.0%}   ratio {share / TARGET_SHARE:.2f}")
    print(
        f"(for reference: reading the same batches back from the store took {up['read_s']:.1f} s "
        f"= {n / up['read_s']:,.0f} readings/s; encoding them {encode_s:.1f} s = {n / encode_s:,.0f} readings/s)"
    )


if __name__ == "__main__":
    main()
