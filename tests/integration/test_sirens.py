"""The local path: smoke at any detector sounds every siren within 500 ms, no cloud involved (a real mosquitto,
the real MQTT driver, hub and store); a clear or an acknowledgement silences them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec

from drivers import driver_class
from drivers.mqtt.driver import MqttDriver
from gateway import sirens
from gateway.hub import Hub
from gateway.model import DeviceKind
from kotihub_tools.broker import MosquittoBroker
from tests.support.sirens import SIREN, SMOKE_A, SMOKE_B, bridge_devices
from tests.support.stores import open_store

RELAYS = [
    {"family": "tasmota", "topic": "siren-hall", "channel": 1},
    {"family": "shelly", "topic": "shellyplus1-hall", "channel": 0},
    {"family": "shelly", "topic": "shelly1-attic", "channel": 0, "shelly_gen": 1},
]
SIREN_TOPICS = {
    f"zigbee2mqtt/{SIREN}/set",
    "cmnd/siren-hall/POWER1",
    "shellyplus1-hall/rpc",
    "shellies/shelly1-attic/relay/0/command",
}


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


def _driver(broker: MosquittoBroker) -> MqttDriver:
    table = {"host": broker.host, "port": broker.port, "reconnect_min": 0.05, "sirens": RELAYS}
    cls = driver_class("mqtt")
    driver = cls(msgspec.convert(table, cls.Config), NoCredentials())
    assert isinstance(driver, MqttDriver)
    return driver


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _decoded(topic: str, payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode()


async def test_smoke_in_one_room_sounds_every_siren_within_500_ms_and_clear_or_ack_silences(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    driver = _driver(mosquitto)
    received: list[tuple[float, str, Any]] = []
    async with open_store(tmp_path) as store, aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        hub = Hub(store, offline_after={})
        s = sirens.attach(hub, [driver])
        assert s is not None
        for topic in ("zigbee2mqtt/+/set", "cmnd/#", "+/rpc", "shellies/#"):
            await client.subscribe(topic, qos=1)

        async def listen() -> None:
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                received.append((time.monotonic(), m.topic.value, _decoded(m.topic.value, m.payload)))

        def commands(after: float) -> dict[str, Any]:
            return {t: p for at, t, p in received if at >= after}

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(listen()),
                tg.create_task(driver.run(hub)),
                tg.create_task(s.run(hub)),
            ]
            try:
                await driver.wait_connected(10)
                await client.publish("zigbee2mqtt/bridge/devices", bridge_devices(), qos=1, retain=True)
                # Discovered like any device: the Zigbee siren from bridge/devices, the relays from the config.
                await _until(
                    lambda: sum(d.info.kind is DeviceKind.SIREN for d in hub.devices.values()) == 4, 10, "4 sirens"
                )
                await _until(lambda: f"mqtt:{SMOKE_B}" in hub.devices, 10, "the detectors")

                # Smoke in the kitchen: every siren, in every room, within 500 ms of the detector's message.
                started = time.monotonic()
                await client.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": True}).encode(), qos=1)
                await _until(lambda: set(commands(started)) == SIREN_TOPICS, 5, "every siren sounded")
                latency = max(at for at, t, _ in received if at >= started) - started
                assert latency < 0.5, f"sirens took {latency * 1000:.0f} ms"
                sounded = commands(started)
                assert sounded[f"zigbee2mqtt/{SIREN}/set"]["warning"]["mode"] == "fire"
                assert sounded["cmnd/siren-hall/POWER1"] == "ON"
                assert sounded["shellyplus1-hall/rpc"]["method"] == "Switch.Set"
                assert sounded["shellyplus1-hall/rpc"]["params"] == {"id": 0, "on": True}
                assert sounded["shellies/shelly1-attic/relay/0/command"] == "on"

                # Smoke in the living room too; the kitchen clears: still sounding (interconnect).
                await client.publish("zigbee2mqtt/smoke_living_room", json.dumps({"smoke": True}).encode(), qos=1)
                await client.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": False}).encode(), qos=1)
                await _until(lambda: hub.counters.alarms == 2, 5, "both alarms")
                await _until(lambda: f"mqtt:{SMOKE_A}" in s.alarming and f"mqtt:{SMOKE_B}" not in s.alarming, 5, "")
                assert s.sounding
                # Both clear: silence.
                cleared = time.monotonic()
                await client.publish("zigbee2mqtt/smoke_living_room", json.dumps({"smoke": False}).encode(), qos=1)
                await _until(lambda: set(commands(cleared)) == SIREN_TOPICS, 5, "every siren silenced")
                quiet = commands(cleared)
                assert quiet[f"zigbee2mqtt/{SIREN}/set"]["warning"]["mode"] == "stop"
                assert quiet["cmnd/siren-hall/POWER1"] == "OFF"
                assert not s.sounding

                # Smoke again, then the register relays an acknowledgement: silence while smoke is still reported.
                again = time.monotonic()
                await client.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": True}).encode(), qos=1)
                await _until(lambda: set(commands(again)) == SIREN_TOPICS, 5, "sounded again")
                acked = time.monotonic()
                assert s.acknowledge() is True
                await _until(lambda: set(commands(acked)) == SIREN_TOPICS, 5, "silenced by the acknowledgement")
                assert commands(acked)["cmnd/siren-hall/POWER1"] == "OFF"
                assert s.counters == sirens.SirenCounters(sounded=2, silenced=2)
            finally:
                for t in tasks:
                    t.cancel()
