"""The local alarm path: smoke at any detector sounds every siren, with or without the cloud (interconnect).

:class:`Sirens` watches the hub's events (a hook called before the event is stored, so nothing on the way to the
store or the uplink can delay it). Smoke at any detector sounds all sirens; they go quiet when every detector
that raised smoke reports clear, or when the register relays an acknowledgement (the ``alarm_ack`` command). The
commands themselves go out through an output (:class:`drivers.mqtt.siren.MqttSirens`) on a supervised task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Final

import msgspec

from drivers.base import Driver, DrivesSirens, SirenOutput
from gateway.errors import TransientError
from gateway.hub import DeviceState, Hub
from gateway.model import DeviceKind, Event, EventKind, SmokeState

log = logging.getLogger(__name__)

RETRY_S: Final = 0.5
"""How soon a siren command that found no broker connection is tried again."""


class SirenCounters(msgspec.Struct, kw_only=True):
    """Siren commands carried out since the daemon started (``kotihub status``'s ``sirens``)."""

    sounded: int = 0
    silenced: int = 0


class SirenStatus(msgspec.Struct, frozen=True, kw_only=True):
    known: int
    online: int
    sounding: bool
    counters: SirenCounters


class Sirens:
    def __init__(self, output: SirenOutput) -> None:
        self.output = output
        self.alarming: set[str] = set()
        self.sounding = False
        self._wanted: asyncio.Queue[bool] = asyncio.Queue()
        self.last_change: dict[str, float] = {}
        self.counters = SirenCounters()

    def on_event(self, event: Event) -> None:
        """The hub's event hook: decides at once and queues the command (never blocks the hub)."""
        if event.kind is not EventKind.SMOKE:
            return
        if event.state == SmokeState.SMOKE:
            self.alarming.add(event.device_id)
            if not self.sounding:
                self._set(True)
        elif event.state == SmokeState.CLEAR and event.device_id in self.alarming:
            self.alarming.discard(event.device_id)
            if not self.alarming and self.sounding:
                self._set(False)

    def acknowledge(self) -> bool:
        """Someone acknowledged the alarm (through the register): silence. Smoke reported again sounds again."""
        self.alarming.clear()
        if self.sounding:
            self._set(False)
            return True
        return False

    def _set(self, on: bool) -> None:
        self.sounding = on
        self.last_change["sound" if on else "silence"] = time.monotonic()
        self._wanted.put_nowait(on)
        log.warning("sirens %s", "SOUNDING: smoke" if on else "silenced")

    async def run(self, hub: Hub) -> None:
        """Announces the configured sirens as devices, keeps the output's connection and carries out the queued
        commands, in order."""
        for info in self.output.devices():
            await hub.device_seen(info)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.output.run(), name="siren-output")
            while True:
                on = await self._wanted.get()
                while True:
                    try:
                        n = await self.output.sound(on)
                        break
                    except TransientError:
                        if not self._wanted.empty():
                            n = 0  # a newer command replaces this one
                            break
                        await asyncio.sleep(RETRY_S)  # a smoke alarm's siren command is never given up
                if on:
                    self.counters.sounded += 1
                else:
                    self.counters.silenced += 1
                log.info("siren command sent to %d siren(s)", n)

    def summary(self, devices: Mapping[str, DeviceState]) -> SirenStatus:
        """For ``kotihub status``: the sirens among the hub's ``devices``, and the commands carried out."""
        sirens = [d for d in devices.values() if d.info.kind is DeviceKind.SIREN]
        return SirenStatus(
            known=len(sirens),
            online=sum(1 for d in sirens if d.online),
            sounding=self.sounding,
            counters=msgspec.structs.replace(self.counters),
        )


def attach(hub: Hub, drivers: list[Driver]) -> Sirens | None:
    """Sirens on the first driver that can drive them (MQTT), hooked to the hub's events; None if none can."""
    for driver in drivers:
        if isinstance(driver, DrivesSirens):
            sirens = Sirens(
                driver.siren_output(lambda: [d.info for d in hub.devices.values() if d.info.kind is DeviceKind.SIREN])
            )
            hub.event_hooks.append(sirens.on_event)
            return sirens
    return None
