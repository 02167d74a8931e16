"""The hub's sealed copy (the register's ``export`` command): how long sealing the household's archive takes.

With N readings (default 1 million, 40 devices, a month), prints the time of ``gateway.hub_export.seal_export``
(the archive streamed through a pipe into age, ciphertext to disk) beside its baseline measured in the same run:
``gateway.privacy.export_archive``, the plaintext zip ``kotihub export`` writes. The ratio is what sealing in a
pipe costs. The figure matters because the hub runs register commands one at a time: while it seals, an
``alarm_ack`` waits (docs/app.md).

Run: ``.venv/bin/python bench/hub_export.py [--readings N]``. Not a test: figures vary with the machine and the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import pyrage

from gateway import crypto
from gateway.hub_export import seal_export
from gateway.model import Quantity, Reading
from gateway.privacy import ExportProgress, export_archive
from gateway.store import Store


async def fill(store: Store, n: int) -> None:
    rng = random.Random(18)
    devices = [f"mqtt:0x00158d00{i:08x}" for i in range(40)]
    start = 1_790_000_000.0
    for i in range(0, n, 20_000):
        batch = [
            Reading(rng.choice(devices), Quantity.TEMPERATURE, round(rng.uniform(15, 25), 2), start + (i + j) * 2.6)
            for j in range(min(20_000, n - i))
        ]
        await store.wait_for_room()
        store.submit_readings(batch)
    await store.flush()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Store.open(root / "hub", os.urandom(32), crypto.choose_algorithm("auto"), commit_max_items=20_000)
        async with store:
            await fill(store, n)
            recipient = str(pyrage.x25519.Identity.generate().to_public())
            t0 = time.perf_counter()
            await asyncio.to_thread(
                export_archive, store, root / "plain.zip", hub_name="b", spool_dir=None, progress=ExportProgress()
            )
            plain_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sealed = await asyncio.to_thread(
                seal_export, store, root / "sealed.age", recipients=[recipient], hub_name="b", spool_dir=None
            )
            sealed_s = time.perf_counter() - t0
    print(f"readings: {n}")
    print(f"baseline (kotihub export, plaintext zip): {plain_s:.2f} s")
    print(f"sealed copy (zip piped into age):         {sealed_s:.2f} s, {sealed['size'] / 1e6:.1f} MB ciphertext")
    print(f"ratio sealed / baseline: {sealed_s / plain_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().readings))
