"""The port through which a driver remembers what must survive a restart (the store implements it).

Drivers never touch the store itself; the daemon hands them a :class:`Memory` backed by
:mod:`gateway.store.driver_state`. Tests and the demo without a store use :class:`VolatileMemory`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Memory(Protocol):
    async def load(self, ns: str) -> dict[str, bytes]:
        """Every record of namespace ``ns``."""
        ...

    def save(
        self, ns: str, key: str, value: bytes | None, *, device_id: str | None = None, with_readings: bool = False
    ) -> asyncio.Future[Any]:
        """Writes (``None``: deletes) a record; resolves once committed. ``with_readings``: atomically with the
        readings handed to the hub in this event-loop tick. ``device_id``: the device the record is about (erasure)."""
        ...

    def commit_soon(self) -> asyncio.Future[Any]:
        """Commits everything queued now instead of at the group-commit deadline; resolves after that commit."""
        ...


class VolatileMemory:
    """A :class:`Memory` that keeps records in a dict: nothing survives the process; every save is "committed"."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, bytes]] = {}

    async def load(self, ns: str) -> dict[str, bytes]:
        return dict(self.records.get(ns, {}))

    def save(
        self, ns: str, key: str, value: bytes | None, *, device_id: str | None = None, with_readings: bool = False
    ) -> asyncio.Future[Any]:
        table = self.records.setdefault(ns, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        return _done()

    def commit_soon(self) -> asyncio.Future[Any]:
        return _done()


def _done() -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut
