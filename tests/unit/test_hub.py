"""The hub: supervision of drivers, restriction, registry and the alarm path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from drivers.base import Driver, HubPort
from gateway.hub import Hub
from gateway.model import Category, DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
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
        hub = Hub(store, offline_after={})
        async with asyncio.TaskGroup() as tg:
            crashing = tg.create_task(
                hub.supervise(Crashing(NoConfig(), Creds()), backoff_initial=0.01, backoff_max=0.05)
            )
            steady = tg.create_task(hub.supervise(Steady(NoConfig(), Creds())))
            while Crashing.runs < 4 or hub.counters["readings_accepted"] < 10:
                await asyncio.sleep(0.01)
            crashing.cancel()
            steady.cancel()
        health = hub.summary()["drivers"]
        assert health["crashing"]["restarts"] >= 3
        assert health["crashing"]["last_error"] == "RuntimeError: driver bug"
        assert health["steady"]["restarts"] == 0
        assert health["steady"]["state"] == "stopped"


async def test_restriction_drops_the_category_before_the_store(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        await hub.set_restricted(Category.SENSORS, True, actor="test")
        await hub.readings([Reading("x", Quantity.TEMPERATURE, 1.0, T0)])
        await hub.event(Event(device_id="x", kind=EventKind.SMOKE, state="smoke", ts=T0))
        await store.flush()
        assert hub.counters["readings_restricted"] == 1
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
        while hub.devices["a"].online:
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
        hub = Hub(store, offline_after={})
        release = asyncio.Event()
        recorded: list[str] = []

        async def slow_clip(device_id: str, reason: str) -> Any:
            await release.wait()
            recorded.append(reason)

        async with asyncio.TaskGroup() as tg:
            hub.spawn = lambda coro, name: tg.create_task(coro, name=name)
            hub.clip_handler = slow_clip
            await asyncio.wait_for(
                hub.event(Event(device_id="s", kind=EventKind.SMOKE, state="smoke", ts=T0)), timeout=2
            )
            assert recorded == []  # the alarm is stored while the clip is still recording
            release.set()
        assert recorded == ["smoke"]
        assert hub.counters["clips"] == 1
