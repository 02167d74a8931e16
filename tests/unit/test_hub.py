"""The hub: supervision of drivers, restriction, registry and the alarm path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from drivers.base import Driver, HubPort, RecordsClips, Restrictable
from gateway.backoff import BackoffPolicy
from gateway.errors import ClipAborted
from gateway.hub import Hub
from gateway.model import Category, Clip, DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
from gateway.supervisor import Supervisor
from tests.support.stores import open_store

T0 = 1_795_000_000.0


class NoConfig(msgspec.Struct):
    pass


class Crashing(Driver):
    name = "crashing"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig
    runs = 0

    async def run(self, hub: HubPort) -> None:
        type(self).runs += 1
        raise RuntimeError("driver bug")


class Steady(Driver):
    name = "steady"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    async def run(self, hub: HubPort) -> None:
        await hub.device_seen(DeviceInfo(device_id="steady:1", driver="steady", kind=DeviceKind.SENSOR))
        while True:
            await hub.readings([Reading("steady:1", Quantity.TEMPERATURE, 20.0, T0)])
            await asyncio.sleep(0.01)


class Creds:
    def get(self, name: str) -> bytes | None:
        return None


async def test_a_crashing_driver_is_restarted_with_backoff_and_never_stops_the_others(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={}, supervisor=Supervisor(BackoffPolicy(initial=0.01, maximum=0.05)))
        async with asyncio.TaskGroup() as tg:
            crashing = tg.create_task(hub.supervise(Crashing(NoConfig(), Creds())))
            steady = tg.create_task(hub.supervise(Steady(NoConfig(), Creds())))
            while Crashing.runs < 4 or hub.counters.readings_accepted < 10:
                await asyncio.sleep(0.01)
            crashing.cancel()
            steady.cancel()
        health = hub.summary()["drivers"]
        assert health["crashing"]["restarts"] >= 3
        assert health["crashing"]["last_error"] == "RuntimeError: driver bug"
        assert health["steady"]["restarts"] == 0
        assert health["steady"]["state"] == "stopped"


class Hanging(Driver):
    """Beats once per run, then awaits forever without raising: the hang the hub must notice on its own."""

    name = "hanging"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig
    runs = 0

    def progress_deadline(self) -> float | None:
        return 0.3

    async def run(self, hub: HubPort) -> None:
        type(self).runs += 1
        self.progress.beat()
        await asyncio.Event().wait()


class Beating(Driver):
    """Slow but alive: it beats well inside its deadline, so it must never be counted as hung."""

    name = "beating"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def progress_deadline(self) -> float | None:
        return 0.3

    async def run(self, hub: HubPort) -> None:
        while True:
            self.progress.beat()
            await asyncio.sleep(0.05)


async def test_a_hung_driver_is_cancelled_and_restarted_while_the_others_run(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={}, supervisor=Supervisor(BackoffPolicy(initial=0.01, maximum=0.05)))
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(hub.supervise(Hanging(NoConfig(), Creds()))),
                tg.create_task(hub.supervise(Beating(NoConfig(), Creds()))),
                tg.create_task(hub.supervise(Steady(NoConfig(), Creds()))),
            ]
            async with asyncio.timeout(30):
                while Hanging.runs < 3:
                    await asyncio.sleep(0.01)
            accepted = hub.counters.readings_accepted
            async with asyncio.timeout(30):
                while hub.counters.readings_accepted < accepted + 10:
                    await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
        drivers = hub.summary()["drivers"]
        assert drivers["hanging"]["hangs"] >= 2
        assert "made no progress" in drivers["hanging"]["last_error"]
        assert drivers["beating"]["hangs"] == 0 and drivers["beating"]["restarts"] == 0
        assert drivers["steady"]["restarts"] == 0


async def test_restriction_drops_the_category_before_the_store(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        await hub.set_restricted(Category.SENSORS, True, actor="test")
        await hub.readings([Reading("x", Quantity.TEMPERATURE, 1.0, T0)])
        await hub.event(Event(device_id="x", kind=EventKind.SMOKE, state="smoke", ts=T0))
        await store.flush()
        assert hub.counters.readings_restricted == 1
        assert list(store.iter_readings()) == []
        assert [i.body["state"] for i in store.iter_items(Lane.ALARM)] == ["smoke"]  # alarms are another category
        again = Hub(store, offline_after={})
        await again.load()
        assert again.restricted == {Category.SENSORS}  # survives a restart


async def test_silent_devices_go_offline_by_kind_and_an_event_is_stored(tmp_path: Path) -> None:
    now = [T0]
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={"sensor": 60.0, "smoke_detector": 3600.0}, clock=lambda: now[0])
        await hub.device_seen(DeviceInfo(device_id="a", driver="t", kind=DeviceKind.SENSOR))
        await hub.device_seen(DeviceInfo(device_id="b", driver="t", kind=DeviceKind.SMOKE_DETECTOR))
        now[0] += 120
        watch = asyncio.create_task(hub.watch_devices(interval=0.01))
        # Until the offline event is committed, not merely until the flag flips (that happens first): cancelling
        # the watcher between the two dropped the event and made this test flaky.
        async with asyncio.timeout(30):
            while not await store.pending(Lane.EVENTS):
                await asyncio.sleep(0.01)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        assert hub.devices["b"].online
        events = [(i.body["device_id"], i.body["state"]) for i in await store.pending(Lane.EVENTS)]
        assert events == [("a", "offline")]
        await hub.readings([Reading("a", Quantity.TEMPERATURE, 1.0, now[0])])
        assert hub.devices["a"].online


async def test_a_smoke_alarm_does_not_wait_for_a_clip(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        release = asyncio.Event()
        recorded: list[str] = []

        class SlowCamera(Driver):
            name: ClassVar[str] = "camera"
            Config: ClassVar[type[msgspec.Struct]] = NoConfig

            async def run(self, hub: HubPort) -> None:
                raise AssertionError("not run here")

            async def record_clips(self, device_id: str, reason: str) -> list[Clip]:
                await release.wait()
                recorded.append(reason)
                return []

        camera = SlowCamera(NoConfig(), Creds())
        assert isinstance(camera, RecordsClips)
        hub = Hub(store, offline_after={}, drivers=[camera])

        async with asyncio.TaskGroup() as tg:
            hub.spawn = lambda coro, name: tg.create_task(coro, name=name)
            await asyncio.wait_for(
                hub.event(Event(device_id="s", kind=EventKind.SMOKE, state="smoke", ts=T0)), timeout=2
            )
            assert recorded == []  # the alarm is stored while the clip is still recording
            release.set()
        assert recorded == ["smoke"]
        assert hub.counters.clips == 1


class Camera(Driver):
    """A clip-keeping driver that only listens: what the hub tells it about restriction."""

    name: ClassVar[str] = "camera"
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self) -> None:
        super().__init__(NoConfig(), Creds())
        self.told: list[frozenset[Category]] = []

    async def run(self, hub: HubPort) -> None:
        raise AssertionError("not run here")

    def restriction_changed(self, restricted: frozenset[Category]) -> None:
        self.told.append(restricted)


async def test_restriction_is_the_hubs_decision_told_to_drivers_and_applied_to_sealed_clips(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    async with open_store(tmp_path) as store:
        camera = Camera()
        assert isinstance(camera, Restrictable) and not isinstance(Steady(NoConfig(), Creds()), Restrictable)
        hub = Hub(store, offline_after={}, drivers=[camera])
        await hub.load()
        assert camera.told == [frozenset()]
        clip = Clip(clip_id="c1", device_id="camera:x", started=T0, duration_s=1.0, size=3, sha256="00", reason="x")
        (spool / "c1.age.tmp").write_bytes(b"age")
        assert await hub.clip_sealed(clip, spool / "c1.age.tmp") == spool / "c1.age"
        assert [i.body["clip_id"] for i in await store.pending(Lane.CLIPS)] == ["c1"]

        await hub.set_restricted(Category.CAMERA, True, actor="test")
        assert camera.told[-1] == frozenset({Category.CAMERA})
        late = msgspec.structs.replace(clip, clip_id="c2")
        (spool / "c2.age.tmp").write_bytes(b"age")
        with pytest.raises(ClipAborted):
            await hub.clip_sealed(late, spool / "c2.age.tmp")
        assert sorted(p.name for p in spool.iterdir()) == ["c1.age"], "a clip sealed under restriction is not kept"
        assert [i.body["clip_id"] for i in await store.pending(Lane.CLIPS)] == ["c1"]

    async with open_store(tmp_path) as store:  # the decision survives a restart and is told again
        again = Camera()
        await Hub(store, offline_after={}, drivers=[again]).load()
        assert again.told == [frozenset({Category.CAMERA})]


async def test_the_hub_decides_liveness_and_stores_each_transition_once(tmp_path: Path) -> None:
    """Activity, the hub's own silence timeout and a driver's evidence (a last will, a lost link) all go through
    one decision: the store (and so the register) gets one availability event per change, whoever reported it."""
    now = [T0]
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={"sensor": 60.0}, clock=lambda: now[0])
        await hub.device_seen(DeviceInfo(device_id="a", driver="t", kind=DeviceKind.SENSOR))

        def availability(state: str) -> Event:
            return Event(device_id="a", kind=EventKind.AVAILABILITY, state=state, ts=now[0])

        await hub.event(availability("online"))  # already online: nothing to store
        await hub.event(availability("offline"))  # a driver's evidence: the hub takes the device offline
        await hub.event(availability("offline"))  # reported again (by the driver's own timeout): no second event
        assert not hub.devices["a"].online
        await hub.readings([Reading("a", Quantity.TEMPERATURE, 20.0, now[0])])  # activity: back online
        assert hub.devices["a"].online
        now[0] += 120
        watch = asyncio.create_task(hub.watch_devices(interval=0.01))
        async with asyncio.timeout(30):
            while len(await store.pending(Lane.EVENTS)) < 3:
                await asyncio.sleep(0.01)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await hub.event(availability("offline"))  # the driver agrees later: nothing new
        await hub.event(Event(device_id="a", kind=EventKind.MOTION, state="on", ts=now[0]))  # back, after the event
        events = [i.body["state"] for i in await store.pending(Lane.EVENTS)]
        assert events == ["offline", "online", "offline", "on", "online"]
        assert hub.counters.availability_unchanged == 3
