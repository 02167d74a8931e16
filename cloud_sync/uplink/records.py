"""What the hub tells the register besides its lanes: its device list (whenever it changes) and the erasures asked
on the hub (each until the register answers with its receipt)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from cloud_sync import protocol as p
from cloud_sync.uplink.client import JSON_HEADERS, RegisterRejected, in_thread
from cloud_sync.uplink.link import IDLE_POLL_S, Link, wait

log = logging.getLogger(__name__)

DEVICES_INTERVAL_S = 60.0


class Erasures(Protocol):
    """Erasures asked on the hub, waiting to be carried to the register (``gateway.privacy.ErasureOutbox``)."""

    waiter: asyncio.Event

    async def pending(self) -> list[dict[str, Any]]: ...

    async def carried(self, receipt_id: str, register_receipt: dict[str, Any]) -> None: ...

    async def refused(self, receipt_id: str, reason: str) -> None: ...


async def devices_loop(link: Link, source: Callable[[], list[dict[str, str]]]) -> None:
    client = link.client(shared=True)
    sent: bytes | None = None
    try:
        while True:
            records = sorted(source(), key=lambda d: d["device_id"])[: p.MAX_DEVICES]
            body = msgspec.json.encode(records)
            if body != sent:
                try:
                    async for attempt in link.retrying("diagnostics"):
                        with attempt:
                            await in_thread(client.request, "POST", "/v1/devices", data=body, headers=JSON_HEADERS)
                    sent = body
                except RegisterRejected as exc:
                    log.error("the register refused the device list: %s", exc)
            await asyncio.sleep(DEVICES_INTERVAL_S)
    finally:
        link.release(client)


async def erasure_loop(link: Link, erasures: Erasures) -> None:
    """Carries each erasure asked on the hub to the register, in order, until it answers with its receipt. The
    requests wait in the store, so an erasure asked while offline (or before a power cut) still arrives."""
    client = link.client(shared=True)
    try:
        while True:
            erasures.waiter.clear()
            for request in await erasures.pending():
                receipt_id = str(request.get("receipt_id", ""))
                try:
                    async for attempt in link.retrying("diagnostics"):
                        with attempt:
                            resp = await in_thread(
                                client.request,
                                "POST",
                                "/v1/erasures",
                                data=msgspec.json.encode(request),
                                headers=JSON_HEADERS,
                            )
                    await erasures.carried(receipt_id, resp.json())
                    log.info("the register carried out an erasure asked on this hub")
                except RegisterRejected as exc:
                    await erasures.refused(receipt_id, str(exc))
                except ValueError as exc:  # a reply that is not JSON: try again later
                    log.error("the register's answer to an erasure was unreadable: %s", exc)
            await wait(erasures.waiter, IDLE_POLL_S)
    finally:
        link.release(client)
