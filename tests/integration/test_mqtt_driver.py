"""The real MQTT driver against a real mosquitto on 127.0.0.1, fed by the simulator, into a recording hub."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest

from drivers import driver_class
from drivers.base import Discovered
from drivers.mqtt.config import MqttConfig
from drivers.mqtt.driver import MqttDriver
from gateway.errors import TransientError
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Quantity, Reading
from kotihub_tools.broker import MosquittoBroker, start_mosquitto
from kotihub_tools.simulators import mqtt as sim

WAIT = 10.0


class RecordingHub:
    """Stands in for the hub's HubPort; a test waits on a condition, not on time."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}
        self.received: list[Reading] = []
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def device_seen(self, info: DeviceInfo) -> None:
        self.devices[info.device_id] = info
        await self._note()

    async def readings(self, readings: Sequence[Reading]) -> None:
        self.received.extend(readings)
        await self._note()

    async def event(self, event: Event) -> None:
        self.events.append(event)
        await self._note()

    async def clip_requested(self, device_id: str, reason: str) -> None:
        raise AssertionError("the MQTT driver never asks for clips")

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def values(self, device: str, quantity: Quantity) -> list[float]:
        return [r.value for r in self.received if r.device_id == device and r.quantity is quantity]

    def smoke_states(self, device: str) -> list[str]:
        return [e.state for e in self.events if e.device_id == device and e.kind is EventKind.SMOKE]


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


def _driver(broker: MosquittoBroker, **overrides: Any) -> MqttDriver:
    table = {"host": broker.host, "port": broker.port, "reconnect_min": 0.05, "reconnect_max": 0.2, **overrides}
    # As the daemon would: the registry names the class, its Config validates the [drivers.mqtt] table.
    cls = driver_class("mqtt")
    config = msgspec.convert(table, cls.Config)
    driver = cls(config, NoCredentials())
    assert isinstance(driver, MqttDriver)
    return driver


def _run(body: Callable[[MqttDriver, RecordingHub], Coroutine[Any, Any, None]], driver: MqttDriver) -> None:
    async def main() -> None:
        hub = RecordingHub()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(driver.run(hub), name="mqtt-driver")
            try:
                await driver.wait_connected(WAIT)
                await body(driver, hub)
                assert not task.done(), "the driver must still be running"
            finally:
                task.cancel()

    asyncio.run(main())


def _sent(scene: list[sim.SimMessage], topic: str) -> list[Any]:
    return [m.json() for m in scene if m.topic == topic]


def test_devices_readings_units_and_smoke_alarm(mosquitto: MosquittoBroker) -> None:
    async def body(driver: MqttDriver, hub: RecordingHub) -> None:
        scene = await sim.publish_scene(mosquitto.host, mosquitto.port, seed=7)
        expected_smoke = ["clear", "smoke", "clear", "test", "clear"]
        await hub.wait_for(
            lambda: (
                hub.smoke_states(sim.SMOKE_ID) == expected_smoke
                and bool(hub.values(sim.HA_ID, Quantity.HUMIDITY))
                and bool(hub.values(sim.SHELLY_ID, Quantity.VOLTAGE))
                and bool(hub.values(sim.TASMOTA_SENSOR_ID, Quantity.HUMIDITY))
                and bool(hub.values(sim.AQARA_ID, Quantity.VOLTAGE))
            )
        )
        # Devices appear with what bridge/devices said, under their IEEE ids.
        aqara = hub.devices[sim.AQARA_ID]
        assert (aqara.model, aqara.manufacturer, aqara.kind) == ("WSDCGQ11LM", "Aqara", DeviceKind.SENSOR)
        assert hub.devices[sim.SMOKE_ID].kind is DeviceKind.SMOKE_DETECTOR
        for dev in (sim.TASMOTA_SENSOR_ID, sim.SHELLY_ID, sim.HA_ID):
            assert dev in hub.devices
        # Readings carry the sent values in the model's units.
        (aq,) = _sent(scene, f"{sim.Z2M}/{sim.AQARA_NAME}")
        assert hub.values(sim.AQARA_ID, Quantity.TEMPERATURE) == [aq["temperature"]]
        assert hub.values(sim.AQARA_ID, Quantity.PRESSURE) == [aq["pressure"]]
        assert hub.values(sim.AQARA_ID, Quantity.VOLTAGE) == [aq["voltage"] / 1000]  # mV -> V
        (tas,) = _sent(scene, f"tele/{sim.TASMOTA_TOPIC}/SENSOR")
        assert hub.values(sim.TASMOTA_SENSOR_ID, Quantity.TEMPERATURE) == [tas["AM2301"]["Temperature"]]
        (sh,) = _sent(scene, f"{sim.SHELLY_PREFIX}/status/temperature:0")
        assert hub.values(sim.SHELLY_ID, Quantity.TEMPERATURE) == [sh["tC"]]
        (ha,) = _sent(scene, sim.HA_STATE_TOPIC)
        assert hub.values(sim.HA_ID, Quantity.TEMPERATURE) == [ha["temperature"]]
        # The alarm is an event on the alarm lane; the test is a test, not an alarm.
        alarm = next(e for e in hub.events if e.state == "smoke")
        assert alarm.lane.value == "alarm"
        assert alarm.device_id == sim.SMOKE_ID
        assert {e.state for e in hub.events if e.kind is EventKind.AVAILABILITY} == {"online"}
        assert driver.stats.malformed == 0

    _run(body, _driver(mosquitto))


async def _publish(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def test_broker_restart_is_survived(mosquitto: MosquittoBroker) -> None:
    home = sim.SimulatedHome(seed=1)

    async def body(driver: MqttDriver, hub: RecordingHub) -> None:
        first = home.smoke("clear")
        await _publish(mosquitto, [(m.topic, m.payload) for m in [*home.announce(), first]])
        await hub.wait_for(lambda: hub.smoke_states(sim.SMOKE_ID) == ["clear"])

        await asyncio.to_thread(mosquitto.restart)
        await driver.wait_connected(WAIT, connects=2)
        assert driver.disconnects >= 1

        alarm = home.smoke("smoke")
        weather = next(m for m in home.tick() if m.topic.endswith(sim.AQARA_NAME))
        await _publish(mosquitto, [(alarm.topic, alarm.payload), (weather.topic, weather.payload)])
        await hub.wait_for(
            lambda: (
                hub.smoke_states(sim.SMOKE_ID) == ["clear", "smoke"]
                and bool(hub.values(sim.AQARA_ID, Quantity.HUMIDITY))
            )
        )
        assert driver.health().connected is True

    _run(body, _driver(mosquitto))


def test_malformed_payloads_are_counted_not_fatal(mosquitto: MosquittoBroker) -> None:
    garbage = [
        (f"{sim.Z2M}/{sim.AQARA_NAME}", b"\xff\x00not json"),
        (f"{sim.Z2M}/{sim.SMOKE_NAME}", b'{"smoke":"maybe"}'),
        (f"tele/{sim.TASMOTA_TOPIC}/SENSOR", b"[1,2"),
        (f"{sim.SHELLY_PREFIX}/status/temperature:0", b'{"tC":"hot"}'),
        (f"{sim.Z2M}/bridge/devices", b'{"oops":1}'),
    ]

    async def body(driver: MqttDriver, hub: RecordingHub) -> None:
        home = sim.SimulatedHome(seed=2)
        good = home.smoke("smoke")
        announce = [(m.topic, m.payload) for m in home.announce()]
        await _publish(mosquitto, [*announce, *garbage, (good.topic, good.payload)])
        await hub.wait_for(lambda: hub.smoke_states(sim.SMOKE_ID) == ["smoke"])
        assert driver.stats.malformed == len(garbage)
        assert driver.health().counters.malformed == len(garbage)
        # Only the good message produced readings; the garbage produced none.
        assert {r.device_id for r in hub.received} == {sim.SMOKE_ID}

    _run(body, _driver(mosquitto))


def test_discover_lists_devices_including_unheard_ones(mosquitto: MosquittoBroker) -> None:
    async def main() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await sim.publish(client, sim.SimulatedHome().announce())
        found = await _driver(mosquitto).discover(timeout=1.0)
        ids = {d.device_id for d in found}
        # Both Zigbee devices come from the retained bridge/devices list alone: no state was ever sent.
        assert {sim.AQARA_ID, sim.SMOKE_ID, sim.HA_ID, sim.SHELLY_ID, "mqtt:zigbee2mqtt/bridge"} <= ids
        smoke = next(d for d in found if d.device_id == sim.SMOKE_ID)
        assert (smoke.kind, smoke.model, smoke.driver) == (DeviceKind.SMOKE_DETECTOR, "JTYJ-GD-01LM/BW", "mqtt")

    asyncio.run(main())


def test_simulator_runs_the_alarm_script(mosquitto: MosquittoBroker) -> None:
    async def body(driver: MqttDriver, hub: RecordingHub) -> None:
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                sim.run_simulator(mosquitto.host, mosquitto.port, stop=stop, interval=0.05, alarm_after=0.1, seed=3)
            )
            try:
                await hub.wait_for(
                    lambda: hub.smoke_states(sim.SMOKE_ID)[:5] == ["clear", "smoke", "clear", "test", "clear"]
                )
                await hub.wait_for(lambda: len(hub.values(sim.SHELLY_ID, Quantity.HUMIDITY)) >= 2)
            finally:
                stop.set()
        temps = hub.values(sim.AQARA_ID, Quantity.TEMPERATURE)
        assert all(17.0 <= t <= 26.0 for t in temps)

    _run(body, _driver(mosquitto, dedupe_window=0.0))


def test_dynamic_ha_subscription_is_restored_after_reconnect(mosquitto: MosquittoBroker) -> None:
    home = sim.SimulatedHome(seed=4)
    configs = [m for m in home.announce() if m.topic.startswith("homeassistant/")]

    async def body(driver: MqttDriver, hub: RecordingHub) -> None:
        await _publish(mosquitto, [(m.topic, m.payload) for m in configs])
        await hub.wait_for(lambda: sim.HA_ID in hub.devices)
        # Broker restarts without persistence: the retained configs are gone, but the driver remembers them.
        await asyncio.to_thread(mosquitto.restart)
        await driver.wait_connected(WAIT, connects=2)
        await _publish(mosquitto, [(sim.HA_STATE_TOPIC, json.dumps({"temperature": 19.5, "humidity": 40.0}).encode())])
        await hub.wait_for(lambda: hub.values(sim.HA_ID, Quantity.TEMPERATURE) == [19.5])

    _run(body, _driver(mosquitto))


class Secrets:
    def __init__(self, **secrets: bytes) -> None:
        self._secrets = secrets
        self.asked: list[str] = []

    def get(self, name: str) -> bytes | None:
        self.asked.append(name)
        return self._secrets.get(name.replace(".", "_"))


def test_password_comes_from_credentials(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "kotihub", "correct horse"], check=True)
    auth = f"allow_anonymous false\npassword_file {passwd}\n"
    with start_mosquitto(tmp_path / "broker", extra_config=auth) as broker:
        table = {"host": broker.host, "port": broker.port, "username": "kotihub", "reconnect_min": 0.05}
        config = msgspec.convert(table, MqttConfig)

        async def main(credentials: Secrets) -> list[Discovered]:
            return await MqttDriver(config, credentials).discover(timeout=0.2)

        good = Secrets(mqtt_password=b"correct horse")
        assert asyncio.run(main(good)) == []
        assert good.asked == ["mqtt.password"]
        with pytest.raises(TransientError):
            asyncio.run(main(Secrets(mqtt_password=b"wrong")))
        with pytest.raises(TransientError):
            asyncio.run(main(Secrets()))
