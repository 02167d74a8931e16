"""Child process for the linger crash test: an uplink with a minute's linger; once its first reading is acknowledged
(committed before it started) it commits 50 more (which linger), prints ``COMMITTED 50`` and waits to be killed."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from cloud_sync.uplink import HubIdentity, Uplink
from gateway.config import UplinkSection
from gateway.model import Lane, Quantity, Reading
from tests.support.stores import open_store

T0 = 1_790_000_000.0


async def main(state: Path, key: bytes, url: str) -> None:
    async with open_store(state, key) as store:
        config = UplinkSection(enabled=True, register_url=url, readings_linger_s=60.0, command_poll_wait=1.0)
        uplink = Uplink(store, config, HubIdentity(state))
        # Before the uplink starts, so that its first drain sends it at once.
        await store.add_readings([Reading("mqtt:primer", Quantity.TEMPERATURE, 0.0, T0)])
        await store.flush()
        task = asyncio.create_task(uplink.run())
        deadline = time.monotonic() + 60
        while uplink.status[Lane.READINGS.value].cursor < 1:
            if task.done() or time.monotonic() > deadline:
                sys.exit("the first reading was not acknowledged")
            await asyncio.sleep(0.02)
        await store.add_readings([Reading("mqtt:t", Quantity.TEMPERATURE, float(i), T0 + 1 + i) for i in range(50)])
        await store.flush()
        print("COMMITTED 50", flush=True)
        await task  # until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), sys.argv[3]))
