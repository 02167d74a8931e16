"""Child process for the sync crash test: adds a batch of readings, then syncs to the register until the outbox is
empty (prints ``SYNCED``), or until it is killed."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from cloud_sync.uplink import HubIdentity, Uplink
from gateway import crypto
from gateway.config import UplinkSection
from gateway.model import Event, EventKind, Lane, Quantity, Reading
from gateway.store import Store


async def main(state: Path, url: str, round_no: int) -> None:
    key = crypto.load_master_key(state)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.02) as store:
        base = round_no * 2000
        for i in range(0, 2000, 250):
            await store.add_readings(
                [
                    Reading("mqtt:c", Quantity.TEMPERATURE, float(base + i + j), 1.79e9 + base + i + j)
                    for j in range(250)
                ]
            )
        await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=1.79e9 + round_no))
        print("READY", flush=True)
        config = UplinkSection(
            enabled=True, register_url=url, batch_items=300, backoff_initial=0.05, backoff_max=0.3, command_poll_wait=1
        )
        uplink = Uplink(store, config, HubIdentity(state))
        task = asyncio.create_task(uplink.run())
        while (await store.depth())[Lane.READINGS.value] or (await store.depth())[Lane.ALARM.value]:
            await asyncio.sleep(0.05)
        await store.flush()
        print("SYNCED", flush=True)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
