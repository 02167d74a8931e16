"""Child process for the SIGKILL crash test: writes readings under load and reports what was accepted.

Each reading's value is the next integer after the largest already stored, so after any number of kills the stored
values must be exactly 0..N-1, in sequence order, each once. ``ACK <value>`` is printed only after the
``add_readings`` that carried it resolved, i.e. after its commit returned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway import crypto
from gateway.model import Quantity, Reading
from gateway.store import Store


async def main(state_dir: Path) -> None:
    key = crypto.load_master_key(state_dir)
    store = Store.open(state_dir, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.005)
    if store.quarantined:
        print("QUARANTINED", flush=True)
        return
    last = max((r.value for _, r in store.iter_readings()), default=-1.0)
    nxt = int(last) + 1
    print(f"READY {nxt}", flush=True)
    async with store:
        while True:
            batch = [Reading("mqtt:crash", Quantity.TEMPERATURE, float(v), 1.7e9 + v) for v in range(nxt, nxt + 37)]
            nxt += len(batch)
            await store.add_readings(batch)
            print(f"ACK {int(batch[-1].value)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
