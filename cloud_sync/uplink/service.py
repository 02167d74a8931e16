"""The uplink as the daemon runs it: every loop (one per item lane, clips, commands, devices, erasures, certificate
renewal, the health heartbeat), each supervised on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from cloud_sync import heartbeat
from cloud_sync import protocol as p
from cloud_sync.enroll import renewal_loop
from cloud_sync.uplink.client import RegisterClient, in_thread
from cloud_sync.uplink.clips import clip_loop
from cloud_sync.uplink.commands import CommandHandler, command_loop
from cloud_sync.uplink.lanes import ITEM_LANES, LINGERING_LANES, lane_loop
from cloud_sync.uplink.link import Link, wait
from cloud_sync.uplink.records import Erasures, devices_loop, erasure_loop
from gateway.supervisor import Supervisor


@dataclass
class Uplink(Link):
    """Runs until cancelled: one task per lane, the clip uploader and the command poller."""

    command_handlers: dict[str, CommandHandler] = field(default_factory=dict)
    command_touches: dict[str, frozenset[str]] = field(default_factory=dict)
    """What each command kind touches; commands that touch nothing in common run beside each other, the rest in
    order (cloud_sync.uplink.commands). A kind not named here touches everything."""
    spool_dir: Path | None = None
    erasures: Erasures | None = None
    """Erasures asked on the hub: each is posted to ``/v1/erasures`` until the register has carried it out."""
    devices_source: Callable[[], list[dict[str, str]]] | None = None
    """The hub's device registry as register ``DeviceRecord`` dicts; sent whenever it changes."""
    supervisor: Supervisor | None = None
    """Runs the uplink's loops; None makes one from the uplink's own backoff settings (tests, tools)."""
    health_source: Callable[[], Awaitable[p.Heartbeat | None]] | None = None
    """Collects the health heartbeat sent every ``heartbeat_interval`` (cloud_sync.heartbeat)."""
    hub_id: str = ""

    async def run(self) -> None:
        """Runs every loop, each supervised on its own, until cancelled."""
        hub_id = self.hub_id = await asyncio.to_thread(self.identity.hub_id)
        supervisor = self.supervisor = self.supervisor or Supervisor(self.policy, rng=self.rng)
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            **{f"uplink {lane.value}": _bind(lane_loop, self, hub_id, lane.value) for lane in ITEM_LANES},
            "uplink clips": _bind(clip_loop, self, hub_id, self.spool_dir),
            "uplink commands": _bind(command_loop, self, self.command_handlers, self.command_touches),
        }
        if self.devices_source is not None:
            loops["uplink devices"] = _bind(devices_loop, self, self.devices_source)
        loops["uplink certificate renewal"] = _bind(renewal_loop, self.config.register_url, self.identity.state_dir)
        if self.erasures is not None:
            loops["uplink erasures"] = _bind(erasure_loop, self, self.erasures)
        if (health := self.health_source) is not None:
            # Its HTTP in the uplink's own daemon threads too, so a heartbeat in flight never holds up a stop. On the
            # bulk lanes' connection, which the readings keep open: a connection of its own was closed by the
            # register between two heartbeats (300 s apart), and each heartbeat paid a TLS handshake.
            interval = self.config.heartbeat_interval

            def bulk() -> RegisterClient:
                return self.client(shared=True)

            async def with_alarm_path() -> p.Heartbeat | None:
                # The alarm lane's connection is the uplink's to tell, not the hub's health source's.
                hb = await health()
                if hb is None or self.alarm is None:
                    return hb
                return msgspec.structs.replace(hb, alarm_path=self.alarm.health())

            loops["uplink heartbeat"] = lambda: heartbeat.send_forever(
                bulk, with_alarm_path, interval, call=in_thread, release=self.release
            )
        try:
            async with asyncio.TaskGroup() as tg:
                for name, loop in loops.items():
                    tg.create_task(supervisor.run(name, loop), name=name)
        finally:
            self.close_shared()

    async def flush(self, timeout: float) -> None:
        """The daemon is stopping: what the lingering lanes hold goes now, and this waits (at most ``timeout``)
        until they have sent it, unless a lane is failing (then it stays in the store for the next start). A lane
        that was catching up is not waited for: its backlog is the next start's."""
        lingering = [self.status[lane] for lane in LINGERING_LANES if self.status[lane].lingering]
        self.lingering = False
        self.kick()
        deadline = time.monotonic() + timeout
        while any((s.lingering or s.draining) and s.last_error is None for s in lingering):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.progress.clear()
            await wait(self.progress, remaining)

    def summary(self) -> dict[str, Any]:
        return {
            "register": self.config.register_url,
            "alarm_url": self.alarm_route.url,
            "alarm_connection": self.alarm.summary() if self.alarm is not None else None,
            "watched_s": max(0.0, self.watched_until - time.monotonic()),
            # Each lane's status, and the most items its next batch holds (cloud_sync.uplink.batchsize).
            "lanes": {lane: {**vars(s), "batch_items": self.batch_size(lane).items} for lane, s in self.status.items()},
            "replies": vars(self.replies).copy(),
        }


def _bind(fn: Callable[..., Awaitable[None]], *args: Any) -> Callable[[], Awaitable[None]]:
    return lambda: fn(*args)
