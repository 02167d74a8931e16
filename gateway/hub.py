"""The hub: the port drivers talk to, the device registry, restriction of processing, and driver supervision."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from drivers.base import Driver, RecordsClips, Restrictable
from gateway.backoff import BackoffPolicy
from gateway.errors import ClipAborted, StoreFullError
from gateway.model import Category, Clip, DeviceInfo, Event, EventKind, Lane, Quantity, Reading, SmokeState
from gateway.store import Store
from gateway.store.clipspool import index_and_publish
from gateway.supervisor import Supervisor, TaskHealth

log = logging.getLogger(__name__)

# How often last-seen times are written to the store: one write per message would wear the SD card.
LAST_SEEN_FLUSH_S = 300.0
ACTIVITY_QUEUE = 1000
_ONLINE = {True: "online", False: "offline"}


class HubCounters(msgspec.Struct, kw_only=True):
    """What the hub has accepted and refused since it started (``kotihub status``'s ``counters``)."""

    readings_accepted: int = 0
    readings_refused: int = 0
    """Refused by the store (full) or lost in a failed commit."""
    readings_restricted: int = 0
    events_accepted: int = 0
    events_restricted: int = 0
    alarms: int = 0
    clips: int = 0
    clips_failed: int = 0
    availability_unchanged: int = 0
    """A driver's availability report that did not change the hub's own decision (no event)."""


@dataclass(slots=True)
class DeviceState:
    info: DeviceInfo
    first_seen: float
    last_seen: float
    online: bool = True
    battery: float | None = None


class Hub:
    """Implements :class:`drivers.base.HubPort`: normalised values in, policy applied, the store fed."""

    def __init__(
        self,
        store: Store,
        *,
        offline_after: dict[str, float],
        clock: Callable[[], float] = time.time,
        supervisor: Supervisor | None = None,
        drivers: Sequence[Driver] = (),
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor(BackoffPolicy())
        self._clock = clock
        self._offline_after = offline_after
        self.devices: dict[str, DeviceState] = {}
        self.restricted: set[Category] = set()
        self.counters = HubCounters()
        self.driver_health: dict[str, TaskHealth] = {}
        self.drivers: dict[str, Driver] = {d.name: d for d in drivers}
        self._unsaved_seen: dict[str, float] = {}
        self._subscribers: list[asyncio.Queue[tuple[str, Any]]] = []
        self.started = clock()
        self.event_hooks: list[Callable[[Event], None]] = []
        """Called with every event a driver reports, before restriction and storage (the local sirens, which keep
        nothing); must return at once."""
        self.spawn: Callable[[Coroutine[Any, Any, None], str], Any] | None = None
        """Starts a supervised background task (the daemon's TaskGroup); clips are recorded this way so that
        neither an alarm nor a driver ever waits for a recording."""

    async def load(self) -> None:
        """Loads the device registry from the store (after a restart devices keep their first-seen time)."""
        for record in await self.store.devices():
            self.devices[record.info.device_id] = DeviceState(record.info, record.first_seen, record.last_seen)
        self.restricted = {Category(c) for c in await self.store.get_setting("restricted", [])}
        for driver in self.drivers.values():
            self._tell_restriction(driver)

    # ---- activity feed (demo, live CLI) --------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[tuple[str, Any]]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(ACTIVITY_QUEUE)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        self._subscribers.remove(queue)

    def _publish(self, kind: str, payload: Any) -> None:
        for queue in self._subscribers:
            if not queue.full():  # a slow watcher loses activity lines, never data
                queue.put_nowait((kind, payload))

    # ---- the driver port -----------------------------------------------------------------------------------------

    def _seen(self, device_id: str, now: float) -> DeviceState | None:
        """Activity of a known device: its last-seen time moves (``_came_back`` then says whether it was offline)."""
        state = self.devices.get(device_id)
        if state is not None:
            state.last_seen = now
            self._unsaved_seen[device_id] = now
        return state

    async def _came_back(self, states: Sequence[DeviceState | None], now: float) -> None:
        for state in states:
            if state is not None and not state.online:
                await self._set_online(state, True, now)

    async def _set_online(self, state: DeviceState, online: bool, ts: float) -> None:
        """The one place a device's liveness changes. The hub decides from activity, its own per-kind silence
        timeout and the drivers' evidence (an MQTT last will, a lost miio link, BLE's timeouts for sleepy devices);
        only a change becomes an availability event, so the store and the register see the hub's decision once
        per transition, whoever reported it."""
        if state.online == online:
            self.counters.availability_unchanged += 1
            return
        state.online = online
        log.info("a %s %s", state.info.kind.value, "came back online" if online else "went offline")
        event = Event(device_id=state.info.device_id, kind=EventKind.AVAILABILITY, state=_ONLINE[online], ts=ts)
        if event.category in self.restricted:
            self.counters.events_restricted += 1
            return
        await self._store_event(event)

    async def device_seen(self, info: DeviceInfo) -> None:
        now = self._clock()
        state = self.devices.get(info.device_id)
        if state is None:
            self.devices[info.device_id] = DeviceState(info, now, now)
            await self.store.upsert_device(info, seen=now)
            log.info("new %s found by the %s driver", info.kind.value, info.driver)
            self._publish("device", info)
            return
        # Keep a name the household gave over whatever the device announces.
        merged = _merge(state.info, info)
        await self._came_back([self._seen(info.device_id, now)], now)
        if merged != state.info:
            state.info = merged
            await self.store.upsert_device(merged, seen=now)

    async def readings(self, readings: Sequence[Reading]) -> None:
        if Category.SENSORS in self.restricted:
            self.counters.readings_restricted += len(readings)
            return
        now = self._clock()
        seen: dict[str, DeviceState | None] = {}
        for r in readings:
            state = seen[r.device_id] = self._seen(r.device_id, now)
            if state is not None and r.quantity is Quantity.BATTERY:
                state.battery = r.value
        await self._came_back(list(seen.values()), now)
        await self.store.wait_for_room()
        try:
            fut = self.store.submit_readings(readings)
        except StoreFullError:
            self.counters.readings_refused += len(readings)
            return
        count = len(readings)
        fut.add_done_callback(lambda f: self._readings_committed(f, count))
        self._publish("readings", readings)

    def _readings_committed(self, fut: asyncio.Future[Any], count: int) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.counters.readings_refused += count
        else:
            self.counters.readings_accepted += count

    async def event(self, event: Event) -> None:
        # First, before the restriction: a siren sounding stores and sends nothing, and safety does not wait.
        for hook in self.event_hooks:
            hook(event)
        if event.category in self.restricted:
            self.counters.events_restricted += 1
            return
        if event.kind is EventKind.AVAILABILITY:
            # A driver's availability report is evidence (it is not activity of the device); the hub decides.
            state = self.devices.get(event.device_id)
            if state is not None:
                await self._set_online(state, event.state == _ONLINE[True], event.ts)
                return
        else:
            now = self._clock()
            state = self._seen(event.device_id, now)
            await self._store_event(event)
            await self._came_back([state], now)  # after the event: an alarm never waits for liveness bookkeeping
            return
        await self._store_event(event)

    async def _store_event(self, event: Event) -> None:
        await self.store.add_event(event)
        self.counters.events_accepted += 1
        if event.kind is EventKind.SMOKE and event.state == SmokeState.SMOKE:
            self.counters.alarms += 1
            log.warning("SMOKE ALARM raised by a smoke detector; it is stored and on the alarm lane")
            await self.clip_requested(event.device_id, "smoke")
        self._publish("event", event)

    async def clip_requested(self, device_id: str, reason: str) -> None:
        """Starts recording (a camera's id records that camera; any other id, e.g. a smoke detector's, records
        every camera) and returns at once."""
        if Category.CAMERA in self.restricted or self.spawn is None:
            return
        for driver in self.drivers.values():
            if isinstance(driver, RecordsClips):
                self.spawn(self._record(driver, device_id, reason), f"clip:{reason}")

    async def _record(self, recorder: RecordsClips, device_id: str, reason: str) -> None:
        try:
            await recorder.record_clips(device_id, reason)
            self.counters.clips += 1
        except Exception as exc:  # a failed recording is counted and logged; it never stops the hub
            self.counters.clips_failed += 1
            log.warning("a clip (%s) was not recorded: %s", reason, type(exc).__name__)

    async def clip_sealed(self, clip: Clip, sealed: Path) -> Path:
        """Indexes a sealed clip in the store, then moves it into the spool (a kill in between is finished at the
        next start); a clip sealed while cameras became restricted is deleted, not kept."""
        if Category.CAMERA in self.restricted:
            await asyncio.to_thread(sealed.unlink, missing_ok=True)
            raise ClipAborted("camera category is restricted")
        return await index_and_publish(clip, sealed, self._index_clip)

    async def _index_clip(self, clip: Clip, sealed: Path) -> None:
        await self.store.add_item(Lane.CLIPS, clip.started, msgspec.to_builtins(clip), ref=clip.clip_id)

    # ---- policy --------------------------------------------------------------------------------------------------

    async def set_restricted(self, category: Category, on: bool, *, actor: str) -> None:
        if on:
            self.restricted.add(category)
        else:
            self.restricted.discard(category)
        await self.store.set_setting("restricted", sorted(c.value for c in self.restricted))
        await self.store.audit(actor, "restrict" if on else "unrestrict", category.value)
        for driver in self.drivers.values():
            self._tell_restriction(driver)

    def _tell_restriction(self, driver: Driver) -> None:
        if isinstance(driver, Restrictable):
            driver.restriction_changed(frozenset(self.restricted))

    async def rename(self, device_id: str, *, name: str | None, room: str | None, actor: str) -> None:
        state = self.devices.get(device_id)
        if state is None:
            raise KeyError(device_id)
        old = state.info
        new = _with(old, name=name, room=room)
        state.info = new
        await self.store.upsert_device(new, seen=state.last_seen)
        await self.store.audit(
            actor,
            "rectify",
            device_id,
            {"old": {"name": old.name, "room": old.room}, "new": {"name": new.name, "room": new.room}},
        )

    # ---- housekeeping --------------------------------------------------------------------------------------------

    async def watch_devices(self, *, interval: float = 30.0) -> None:
        """Marks silent devices offline (per-kind timeout) and writes last-seen times in batches."""
        last_flush = self._clock()
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            for state in list(self.devices.values()):
                timeout = self._offline_after.get(state.info.kind.value, self._offline_after.get("other", 90_000.0))
                if state.online and now - state.last_seen > timeout:
                    await self._set_online(state, False, now)
            if now - last_flush >= LAST_SEEN_FLUSH_S:
                await self.flush_last_seen()
                last_flush = now

    async def flush_last_seen(self) -> None:
        if self._unsaved_seen:
            pending, self._unsaved_seen = self._unsaved_seen, {}
            await self.store.touch_devices(pending)

    async def supervise(self, driver: Driver) -> None:
        """Runs a driver forever under the hub's supervision policy: a crash or a hang (no progress past the
        driver's own deadline) is logged, shown in status and retried with backoff. A driver never takes the
        daemon down."""
        health = self.driver_health.setdefault(driver.name, TaskHealth(driver.name))
        if self.drivers.get(driver.name) is not driver:
            self.drivers[driver.name] = driver
            self._tell_restriction(driver)
        await self.supervisor.run(
            f"driver {driver.name}", lambda: driver.run(self), progress=driver.progress, health=health
        )

    def summary(self) -> dict[str, Any]:
        online = sum(1 for d in self.devices.values() if d.online)
        return {
            "uptime_s": self._clock() - self.started,
            "devices": {"known": len(self.devices), "online": online, "offline": len(self.devices) - online},
            "counters": msgspec.structs.replace(self.counters),
            "restricted": sorted(c.value for c in self.restricted),
            "drivers": {name: self.driver_status(name) for name in self.driver_health},
        }

    def driver_status(self, name: str) -> dict[str, Any]:
        """One driver in ``kotihub status``: its supervised task's state beside the health it reports (its link,
        counters and own fields, as :class:`~drivers.base.DriverHealth` Structs that the control socket encodes)."""
        driver = self.drivers.get(name)
        health = msgspec.structs.asdict(driver.health()) if driver is not None else {}
        return {**self.driver_health[name].view(), **health}


def _merge(known: DeviceInfo, announced: DeviceInfo) -> DeviceInfo:
    return _with(
        announced,
        name=known.name or announced.name,
        room=known.room or announced.room,
    )


def _with(info: DeviceInfo, *, name: str | None, room: str | None) -> DeviceInfo:
    return msgspec.structs.replace(
        info, name=info.name if name is None else name, room=info.room if room is None else room
    )
