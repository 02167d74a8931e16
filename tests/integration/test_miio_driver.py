"""The real miio driver, with python-miio 0.5.12 over UDP on 127.0.0.1, against the simulator, into a recording hub."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import msgspec
import pytest

from drivers import driver_class
from drivers.miio.config import DeviceConfig, MiioConfig
from drivers.miio.driver import MiioDriver, token_name
from drivers.miio.poller import DevicePoller
from gateway.errors import StoreFullError
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading, SmokeState, device_id
from kotihub_tools.simulators.miio import (
    DEMO_HT_SID,
    DEMO_SMOKE_SID,
    DEMO_WEATHER_SID,
    MiioSimulator,
    SimulatedDevice,
    SimulatedGateway,
    demo_table,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # python-miio 0.5.12 on Click 8.2+
    from miio.exceptions import DeviceError

TOKEN = bytes.fromhex("3a1f09c2d4e5b6a7980112233445566f")
WAIT = 5.0


class RecordingHub:
    """Stands in for the hub's HubPort and lets a test wait for what it has been told."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}
        self.received: list[Reading] = []
        self.events: list[Event] = []
        self.calls: list[tuple[str, str]] = []
        """(port method, device id) in the order the driver called them."""
        self._changed = asyncio.Condition()

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def device_seen(self, info: DeviceInfo) -> None:
        self.devices[info.device_id] = info
        self.calls.append(("device_seen", info.device_id))
        await self._note()

    async def readings(self, readings: Sequence[Reading]) -> None:
        self.received.extend(readings)
        await self._note()

    async def event(self, event: Event) -> None:
        self.events.append(event)
        self.calls.append(("event", event.device_id))
        await self._note()

    async def clip_requested(self, device_id: str, reason: str) -> None:
        raise AssertionError("the miio driver has no cameras")

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def smoke_states(self, dev: str) -> list[str]:
        return [e.state for e in self.events if e.kind is EventKind.SMOKE and e.device_id == dev]

    def values(self, dev: str, quantity: Quantity) -> list[float]:
        return [r.value for r in self.received if r.device_id == dev and r.quantity is quantity]


class Creds:
    def __init__(self, tokens: dict[str, bytes]) -> None:
        self.tokens = tokens

    def get(self, name: str) -> bytes | None:
        return self.tokens.get(name)


def make_driver(port: int, *, kind: str = "gateway", creds: Creds | None = None, **extra: Any) -> MiioDriver:
    raw = {
        "devices": [{"host": "127.0.0.1", "port": port, "kind": kind, "poll_interval": 0.1}],
        "timeout": 0.2,
        "retries": 0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "discovery_target": "127.0.0.1",
        **extra,
    }
    config = msgspec.convert(raw, MiioConfig)
    return MiioDriver(config, creds or Creds({token_name("127.0.0.1"): TOKEN.hex().encode()}))


@contextlib.asynccontextmanager
async def running(driver: MiioDriver, hub: RecordingHub) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(hub), name="miio-under-test")
        try:
            yield
        finally:
            task.cancel()
    assert task.cancelled(), "the driver ended on its own instead of living until cancelled"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_gateway_devices_and_readings() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            driver = make_driver(sim.port)
            subs = {sid: device_id("miio", sid) for sid in gw.subdevices}
            weather = DEMO_WEATHER_SID
            async with running(driver, hub):
                await hub.wait_for(lambda: bool(hub.values(subs[weather], Quantity.PRESSURE)))

            gw_id = f"miio:{gw.did}"
            assert hub.devices[gw_id].kind is DeviceKind.GATEWAY
            assert hub.devices[gw_id].model == "lumi.gateway.v3"
            assert hub.devices[gw_id].address == "127.0.0.1"
            for sid, sub_id in subs.items():
                info = hub.devices[sub_id]
                assert info.via == gw_id
                expected = DeviceKind.SMOKE_DETECTOR if gw.subdevices[sid].type_id == 15 else DeviceKind.SENSOR
                assert info.kind is expected
            assert hub.devices[subs[DEMO_SMOKE_SID]].model == "lumi.sensor_smoke"
            # Raw values are hundredths (pressure: Pa); the hub gets °C, %RH and hPa.
            raw = gw.subdevices[weather].props
            assert hub.values(subs[weather], Quantity.TEMPERATURE)[0] == raw["temperature"] / 100
            assert hub.values(subs[weather], Quantity.HUMIDITY)[0] == raw["humidity"] / 100
            assert hub.values(subs[weather], Quantity.PRESSURE)[0] == raw["pressure"] / 100
            assert hub.values(subs[weather], Quantity.BATTERY)[0] == gw.subdevices[weather].battery
            assert hub.values(gw_id, Quantity.ILLUMINANCE)[0] == gw.illumination
            # The ht.v1 has no pressure sensor; nothing is made up for it.
            assert hub.values(subs[DEMO_HT_SID], Quantity.PRESSURE) == []
            assert driver.health().devices[0].state == "ok"
            assert driver.health().counters.malformed == 0
            assert "get_device_prop_exp" in sim.requests

    run(scenario())


def test_smoke_alarm_then_fault_then_clear() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            smoke_id = device_id("miio", DEMO_SMOKE_SID)
            async with running(make_driver(sim.port), hub):
                await hub.wait_for(lambda: hub.smoke_states(smoke_id) == ["clear"])
                gw.smoke(DEMO_SMOKE_SID, SmokeState.SMOKE, density=23)
                await hub.wait_for(lambda: hub.smoke_states(smoke_id)[-1:] == ["smoke"])
                gw.smoke(DEMO_SMOKE_SID, SmokeState.FAULT)
                await hub.wait_for(lambda: hub.smoke_states(smoke_id)[-1:] == ["fault"])
                gw.smoke(DEMO_SMOKE_SID, SmokeState.CLEAR)
                await hub.wait_for(lambda: hub.smoke_states(smoke_id)[-1:] == ["clear"])
                polls = sim.requests.count("get_illumination")
                await sim.wait_for("get_illumination", polls + 2)

            # The detector is registered before its first event reaches the hub.
            assert hub.calls.index(("device_seen", smoke_id)) < hub.calls.index(("event", smoke_id))
            # One event per change, none repeated while the state holds.
            assert hub.smoke_states(smoke_id) == ["clear", "smoke", "fault", "clear"]
            alarm = next(e for e in hub.events if e.state == "smoke")
            assert alarm.kind is EventKind.SMOKE
            assert alarm.lane is Lane.ALARM
            assert alarm.attrs["density"] == 23.0

    run(scenario())


def test_test_button_is_reported_as_test_not_smoke() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        gw.smoke(DEMO_SMOKE_SID, SmokeState.TEST)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            smoke_id = device_id("miio", DEMO_SMOKE_SID)
            async with running(make_driver(sim.port), hub):
                await hub.wait_for(lambda: bool(hub.smoke_states(smoke_id)))
            assert hub.smoke_states(smoke_id) == ["test"]

    run(scenario())


def test_plain_device() -> None:
    async def scenario() -> None:
        dev = SimulatedDevice(did=0x1122, token=TOKEN, model="zhimi.airmonitor.v1")
        async with MiioSimulator(dev) as sim:
            hub = RecordingHub()
            async with running(make_driver(sim.port, kind="device"), hub):
                await hub.wait_for(lambda: "miio:4386" in hub.devices)
            info = hub.devices["miio:4386"]
            assert (info.kind, info.model, info.via) == (DeviceKind.OTHER, "zhimi.airmonitor.v1", "")
            assert sim.requests[:2] == ["hello", "miIO.info"]
            assert "get_device_prop" not in sim.requests

    run(scenario())


def test_discovery_finds_the_simulator() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            driver = make_driver(sim.port, discovery_port=sim.port)
            found = await driver.discover(0.5)
            assert [(d.device_id, d.address, d.driver) for d in found] == [
                (f"miio:{gw.did}", f"127.0.0.1:{sim.port}", "miio")
            ]
            assert sim.requests.count("hello") >= 1

            off = make_driver(sim.port, discovery_port=sim.port, discovery=False)
            before = sim.requests.count("hello")
            assert await off.discover(0.2) == []
            assert sim.requests.count("hello") == before

    run(scenario())


def test_silent_device_shows_in_health_and_recovers() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            driver = make_driver(sim.port)
            gw_id = f"miio:{gw.did}"

            def state(h: dict[str, Any]) -> str:
                return str(h.devices[0].state)

            async with running(driver, hub):
                await driver.wait_health(lambda h: state(h) == "ok", WAIT)
                sim.answering = False
                await driver.wait_health(lambda h: state(h) == "unreachable" and h.devices[0].failures >= 2, WAIT)
                health = driver.health()
                assert health.failing == 1
                assert health.devices[0].last_error == "no answer"
                assert health.devices[0].retry_at is not None
                assert health.devices[0].device_id == gw_id
                readings_when_down = len(hub.received)

                sim.answering = True
                await driver.wait_health(lambda h: state(h) == "ok", WAIT)
                await hub.wait_for(lambda: len(hub.received) > readings_when_down)

            availability = [e.state for e in hub.events if e.kind is EventKind.AVAILABILITY and e.device_id == gw_id]
            assert availability == ["offline", "online"]
            assert driver.health().devices[0].failures == 0

    run(scenario())


def test_missing_then_added_token() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            creds = Creds({})
            driver = make_driver(sim.port, creds=creds)
            async with running(driver, hub):
                await driver.wait_health(lambda h: h.devices[0].state == "no_token", WAIT)
                assert sim.requests == []
                creds.tokens[token_name("127.0.0.1")] = TOKEN.hex().encode()
                await driver.wait_health(lambda h: h.devices[0].state == "ok", WAIT)
            assert f"miio:{gw.did}" in hub.devices

    run(scenario())


def test_wrong_token_is_unreachable_until_corrected() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            wrong = Creds({token_name("127.0.0.1"): b"00" * 16})
            driver = make_driver(sim.port, creds=wrong)
            async with running(driver, hub):
                await driver.wait_health(lambda h: h.devices[0].failures >= 2, WAIT)
                # The hello needs no token, the request does: the device ignores what it cannot authenticate.
                assert driver.health().devices[0].state == "unreachable"
                assert sim.malformed >= 1
                assert hub.devices == {}
                assert hub.received == []
                # The technician corrects the credential; the driver picks it up without a restart.
                wrong.tokens[token_name("127.0.0.1")] = TOKEN.hex().encode()
                await driver.wait_health(lambda h: h.devices[0].state == "ok", WAIT)
            assert f"miio:{gw.did}" in hub.devices

    run(scenario())


def test_registry_and_config() -> None:
    assert driver_class("miio") is MiioDriver
    config = msgspec.convert({"devices": [{"host": "192.0.2.7", "kind": "gateway"}]}, MiioConfig)
    assert config.devices[0].port == 54321
    assert config.devices[0].poll_interval == 60.0
    assert config.discovery_target == "255.255.255.255"
    demo = msgspec.convert(demo_table(40000), MiioConfig)
    assert (demo.devices[0].port, demo.discovery_target, demo.discovery_port) == (40000, "127.0.0.1", 40000)
    for bad in ({"devices": [{"host": "h", "kind": "camera"}]}, {"devices": [{"host": "h", "poll_interval": 0}]}):
        try:
            msgspec.convert(bad, MiioConfig)
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"accepted {bad}")


class RefusingHub(RecordingHub):
    """A hub whose store refuses the first event (disk full), as the real one may."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def event(self, event: Event) -> None:
        if not self.refused:
            self.refused += 1
            raise StoreFullError("disk full")
        await super().event(event)


def test_smoke_refused_by_the_hub_is_sent_again_after_restart() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        gw.smoke(DEMO_SMOKE_SID, SmokeState.SMOKE)
        async with MiioSimulator(gw) as sim:
            hub = RefusingHub()
            driver = make_driver(sim.port)
            # The hub restarts a driver whose run() raised; the same instance runs again.
            with pytest.raises(ExceptionGroup) as raised:
                await driver.run(hub)
            assert raised.group_contains(StoreFullError)
            async with running(driver, hub):
                await hub.wait_for(lambda: bool(hub.smoke_states(device_id("miio", DEMO_SMOKE_SID))))
            assert hub.smoke_states(device_id("miio", DEMO_SMOKE_SID)) == ["smoke"]

    run(scenario())


def test_simulator_error_replies_reach_python_miio_as_device_errors() -> None:
    async def scenario() -> None:
        async with MiioSimulator(SimulatedGateway.demo(TOKEN)) as sim:
            dev = DevicePoller(
                DeviceConfig(host="127.0.0.1", port=sim.port, kind="gateway"), TOKEN.hex(), timeout=0.5, retries=0
            )
            lib: Any = dev._dev
            with pytest.raises(DeviceError) as err:
                await asyncio.to_thread(lib.send, "no_such_method")
            assert err.value.code == -32601
            with pytest.raises(DeviceError) as err:
                await asyncio.to_thread(lib.send, "get_device_prop", ["lumi.nope", "temperature"])
            assert err.value.code == -5001
            assert sim.requests == ["hello", "no_such_method", "get_device_prop"]

    run(scenario())


def test_a_lost_subdevice_costs_only_its_own_values() -> None:
    async def scenario() -> None:
        gw = SimulatedGateway.demo(TOKEN)
        weather, ht = DEMO_WEATHER_SID, DEMO_HT_SID
        async with MiioSimulator(gw) as sim:
            hub = RecordingHub()
            driver = make_driver(sim.port)
            weather_id, ht_id = device_id("miio", weather), device_id("miio", ht)
            async with running(driver, hub):
                await hub.wait_for(lambda: bool(hub.values(weather_id, Quantity.TEMPERATURE)))
                gw.subdevices[weather].lost = True
                lost_at = len(hub.values(weather_id, Quantity.TEMPERATURE))
                await driver.wait_health(lambda h: h.counters.malformed >= 4, WAIT)
                ht_before = len(hub.values(ht_id, Quantity.TEMPERATURE))
                gw.weather(ht, temperature=-3.25, humidity=71.5)
                await hub.wait_for(lambda: -3.25 in hub.values(ht_id, Quantity.TEMPERATURE))
                # No stale values are republished for the lost sensor, and the gateway itself stays healthy.
                after = hub.values(weather_id, Quantity.TEMPERATURE)
                assert len(after) <= lost_at + 1  # at most a poll that was already under way
                assert len(hub.values(ht_id, Quantity.TEMPERATURE)) > ht_before
                assert hub.values(ht_id, Quantity.HUMIDITY)[-1] == 71.5
                assert driver.health().devices[0].state == "ok"

                gw.subdevices[weather].lost = False
                count = len(hub.values(weather_id, Quantity.TEMPERATURE))
                await hub.wait_for(lambda: len(hub.values(weather_id, Quantity.TEMPERATURE)) > count)

    run(scenario())
