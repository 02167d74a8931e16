"""A driver cancelled at any moment stops: the hub's stop and hang recovery rely on it. The MQTT driver once went on
into its message loop after Python 3.11's ``asyncio.wait_for`` (inside aiomqtt) dropped a cancel that landed as a
CONNACK or SUBACK arrived; the bench harness test then hung until its timeout."""

from __future__ import annotations

import asyncio
import random
import time

import msgspec

from drivers import driver_class
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import run_simulator
from tests.support.recording_hub import RecordingHub


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


async def test_the_mqtt_driver_stops_whenever_it_is_cancelled(mosquitto: MosquittoBroker) -> None:
    rng = random.Random(1)
    stop = asyncio.Event()
    # A busy broker: messages arrive while the driver connects, subscribes and is cancelled.
    sim = asyncio.create_task(run_simulator(mosquitto.host, mosquitto.port, stop=stop, interval=0.05))
    cls = driver_class("mqtt")
    worst = 0.0
    try:
        for _ in range(40):
            driver = cls(msgspec.convert({"host": mosquitto.host, "port": mosquitto.port}, cls.Config), NoCredentials())
            task = asyncio.create_task(driver.run(RecordingHub()))
            await asyncio.sleep(rng.uniform(0, 0.5))  # the fault: a cancel at a random moment of its life
            task.cancel()
            started = time.monotonic()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done, "the MQTT driver did not stop within 10 s of being cancelled"
            assert task.cancelled()
            worst = max(worst, time.monotonic() - started)
    finally:
        stop.set()
        await sim
    assert worst < 10
