"""A recording stand-in for the hub's HubPort, with awaitable conditions instead of sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.model import Clip, DeviceInfo, Event, Reading
from gateway.store.clipspool import index_and_publish


class RecordingHub:
    def __init__(self, *, fail_readings: int = 0) -> None:
        self.devices: list[DeviceInfo] = []
        self.events: list[Event] = []
        self.received: list[Reading] = []
        self.clips: list[tuple[str, str]] = []
        self.sealed: list[tuple[Clip, Path]] = []
        self._fail_readings = fail_readings
        self._changed = asyncio.Condition()

    async def device_seen(self, info: DeviceInfo) -> None:
        await self._record(lambda: self.devices.append(info))

    async def readings(self, readings: Sequence[Reading]) -> None:
        if self._fail_readings:
            self._fail_readings -= 1
            raise OSError("store unavailable")
        await self._record(lambda: self.received.extend(readings))

    async def event(self, event: Event) -> None:
        await self._record(lambda: self.events.append(event))

    async def clip_requested(self, device_id: str, reason: str) -> None:
        await self._record(lambda: self.clips.append((device_id, reason)))

    async def clip_sealed(self, clip: Clip, sealed: Path) -> Path:
        """Keeps the clip in the spool as the hub does, without a store to index it in."""
        await self._record(lambda: self.sealed.append((clip, sealed)))
        return await index_and_publish(clip, sealed, None)

    async def _record(self, change: Callable[[], None]) -> None:
        async with self._changed:
            change()
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)
