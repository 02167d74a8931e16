"""The hub's health heartbeat: a compact :class:`~cloud_sync.protocol.Heartbeat` sent on a schedule.

It goes straight to ``PUT /v1/heartbeat``, not through the outbox: only the latest matters, so a heartbeat missed
while offline is simply not sent (no backlog, and no writes to the SD card it is partly there to watch). It takes
its turn on the bulk lanes' connection, which readings keep open, rather than paying a TLS handshake every five
minutes on one of its own. An alarm never waits for it: the alarm lane has its own task and connection.

It carries no personal data: versions, uptime, disk and store sizes, write volume, driver states by driver name,
and per-lane sequence numbers and counts — no device ids, names, rooms or addresses. It is still "diagnostics from
the hub" in the privacy notice's terms, so while the household restricts the diagnostics category none is sent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import msgspec

from cloud_sync import protocol as p
from gateway.errors import PermanentError, TransientError
from gateway.model import Category, Lane

if TYPE_CHECKING:
    from gateway.hub import Hub
    from gateway.store import Store

log = logging.getLogger(__name__)

WINDOW_S = 86_400.0
_DRIVER_NAME = re.compile(r"[a-z0-9_]{1,32}")
_STATE = re.compile(r"[a-z_]{0,16}")
_HEADERS = {"Content-Type": "application/json"}


def _version() -> str:
    try:
        return metadata.version("kotihub")[:64]
    except metadata.PackageNotFoundError:
        return "unknown"


def _block_stat(path: Path) -> Path | None:
    """``/sys/dev/block/MAJ:MIN/stat`` of the device (or partition) holding ``path``, if the kernel shows one."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    return stat if stat.exists() else None


class WriteMeter:
    """Bytes written per day to the hub's storage, over a sliding window of up to a day.

    From the block device's own counter where the kernel exposes it (every writer, so the SD card's real wear), else
    from ``/proc/self/io`` (this process only, e.g. in a container on an overlay file system)."""

    def __init__(self, path: Path, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._stat = _block_stat(path)
        self.source: Literal["block", "process", ""] = (
            "block" if self._stat is not None else "process" if Path("/proc/self/io").exists() else ""
        )
        self._window = window_s
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def written(self) -> int | None:
        """Total bytes written so far by the measured source."""
        try:
            if self._stat is not None:
                return int(self._stat.read_text().split()[6]) * 512  # sectors written; always 512-byte units
            if self.source == "process":
                for line in Path("/proc/self/io").read_text().splitlines():
                    if line.startswith("write_bytes:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def per_day(self) -> int | None:
        """Takes a sample; the write rate since the oldest sample in the window, scaled to a day (None until two
        samples a second apart exist)."""
        total = self.written()
        if total is None:
            return None
        now = self._clock()
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        if now - t0 < 1.0:
            return None
        return max(0, round((total - b0) / (now - t0) * 86_400))


class HealthSource:
    """Collects a heartbeat from the running hub; None while the household restricts diagnostics."""

    def __init__(self, store: Store, hub: Hub, *, meter: WriteMeter | None = None) -> None:
        self._store = store
        self._hub = hub
        self._meter = meter or WriteMeter(store.state_dir)
        self._version = _version()

    async def __call__(self) -> p.Heartbeat | None:
        if Category.DIAGNOSTICS in self._hub.restricted:
            return None
        usage = await asyncio.to_thread(self._store.disk_usage)
        written = await asyncio.to_thread(self._meter.per_day)
        depth = await self._store.depth()
        drivers = {
            name: p.DriverStatus(state=h.state if _STATE.fullmatch(h.state) else "unknown", restarts=h.restarts)
            for name, h in list(self._hub.driver_health.items())[:32]
            if _DRIVER_NAME.fullmatch(name)
        }
        lanes: dict[p.LaneName, p.LaneHealth] = {
            lane.value: p.LaneHealth(
                newest_seq=max(0, self._store.newest_seq(lane)),
                acked_seq=max(0, self._store.synced_seq(lane)),
                pending=depth.get(lane.value, 0),
            )
            for lane in Lane
        }
        return p.Heartbeat(
            version=self._version,
            uptime_s=max(0.0, float(self._hub.summary()["uptime_s"])),
            disk_free_bytes=usage["free_bytes"],
            disk_total_bytes=usage["total_bytes"],
            store_bytes=usage["db_bytes"],
            written_bytes_per_day=written,
            written_source=self._meter.source if written is not None else "",
            drivers=drivers,
            lanes=lanes,
        )


class _Client(Protocol):
    def request(self, method: str, path: str, *, data: bytes, headers: dict[str, str]) -> object: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=_Client)


async def send_forever(
    client_factory: Callable[[], C],
    source: Callable[[], Awaitable[p.Heartbeat | None]],
    interval: float,
    *,
    call: Callable[..., Awaitable[Any]] = asyncio.to_thread,
    release: Callable[[C], None] | None = None,
) -> None:
    """Sends a heartbeat at once and then every ``interval`` seconds until cancelled. A failure is logged (once
    until the next success) and the next heartbeat simply comes on schedule: only the latest one matters.
    ``release``: how the client is let go at the end (default: closed; the uplink's shared one is left open)."""
    client = client_factory()
    failing = False
    try:
        while True:
            started = time.monotonic()
            try:
                hb = await source()
                if hb is None:  # nothing to send now (diagnostics restricted)
                    await asyncio.sleep(interval)
                    continue
                body = msgspec.json.encode(hb)
                await call(client.request, "PUT", "/v1/heartbeat", data=body, headers=_HEADERS)
            except (TransientError, PermanentError, OSError) as exc:
                if not failing:
                    log.warning("health heartbeat not delivered (%s); trying again on schedule", exc)
                failing = True
            except Exception:  # a heartbeat must never take the uplink (and with it the alarm lane) down
                if not failing:
                    log.exception("could not collect the health heartbeat; trying again on schedule")
                failing = True
            else:
                if failing:
                    log.info("health heartbeat delivered again")
                failing = False
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if release is not None:
            release(client)
        else:
            client.close()
