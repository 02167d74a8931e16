"""Tells the household (through the register's health alerts) when the hub's storage is nearly full.

Every ``interval`` seconds the state disk is checked; when free space falls below the limit a ``storage_low``
diagnostics item goes on the outbox, once per episode (again only after it recovered). The register turns it into a
``storage_full`` health alert (``cloud_sync.register.notify``). Nothing is sent while diagnostics are restricted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.hub import Hub
from gateway.model import Category, Lane

log = logging.getLogger(__name__)

LOW_FRACTION = 0.10
"""Nearly full: less than this share of the disk free (or less than twice the store's reserve)."""


def is_low(free: int, total: int, reserve: int) -> bool:
    return free < max(total * LOW_FRACTION, 2 * reserve)


async def watch_storage(hub: Hub, *, reserve: int, interval: float = 300.0) -> None:
    reported = False
    while True:
        usage = await asyncio.to_thread(hub.store.disk_usage)
        low = is_low(usage["free_bytes"], usage["total_bytes"], reserve)
        if low and not reported and Category.DIAGNOSTICS not in hub.restricted:
            body = {"event": "storage_low", "free_bytes": usage["free_bytes"], "total_bytes": usage["total_bytes"]}
            await hub.store.add_item(Lane.DIAGNOSTICS, time.time(), body, urgent=False)
            log.warning("the hub's storage is nearly full (%d MB free)", usage["free_bytes"] // 1_000_000)
            reported = True
        elif not low:
            reported = False
        await asyncio.sleep(interval)
