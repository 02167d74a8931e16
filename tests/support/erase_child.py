"""Child process for the erasure crash test: ``fill`` makes a store; ``erase SCOPE TARGET`` erases (or resumes an
interrupted erasure) and prints ``DONE`` with the receipt when it has completed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from gateway import crypto
from gateway.model import Event, EventKind, Quantity, Reading
from gateway.privacy import Eraser
from gateway.store import Store

T0 = 1_795_000_000.0
DEVICES = ("mqtt:keep", "mqtt:erase")


async def fill(state: Path) -> None:
    key = crypto.load_master_key(state)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.01) as store:
        for day in range(20):
            batch = [Reading(DEVICES[i % 2], Quantity.TEMPERATURE, float(i), T0 + day * 86_400 + i) for i in range(400)]
            await store.add_readings(batch)
            for device in DEVICES:
                await store.add_event(Event(device_id=device, kind=EventKind.MOTION, state="on", ts=T0 + day * 86_400))


async def erase(state: Path, scope: str, target: str) -> None:
    key = crypto.load_master_key(state)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.01) as store:
        eraser = Eraser(store, key, spool_dir=None, hub_name="test")
        print("READY", flush=True)
        receipt = await eraser.resume() or await eraser.request(scope, target, requested_by="test")
        print("DONE " + json.dumps(receipt), flush=True)


if __name__ == "__main__":
    state_dir = Path(sys.argv[2])
    if sys.argv[1] == "fill":
        asyncio.run(fill(state_dir))
    else:
        asyncio.run(erase(state_dir, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else ""))
