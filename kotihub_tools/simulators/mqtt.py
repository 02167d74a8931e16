"""Simulated MQTT devices that publish the payloads real ones do, for the demo and the tests.

Payload shapes and their sources (see ``/work/shared/reference/protocols.md`` §2 and ``tests/vectors/mqtt/``):

- Aqara WSDCGQ11LM via Zigbee2MQTT: state keys as logged in Koenkk/zigbee2mqtt#21808; the ``bridge/devices``
  entry fields from the Zigbee2MQTT docs (``mqtt_topics_and_messages.md``).
- Xiaomi JTYJ-GD-01LM/BW smoke detector via Zigbee2MQTT: stas-demydiuk/domoticz-zigbee2mqtt-plugin#311; its test
  button sets ``test: true`` (zigbee-herdsman-converters ``lumi_smoke``, Koenkk/zigbee2mqtt#391).
- Tasmota with an AM2301: ``tele/<topic>/SENSOR`` as in tasmota.github.io/docs/AM2301, LWT ``Online``.
- Shelly H&T Gen3: ``status/temperature:0``, ``status/humidity:0``, ``status/devicepower:0`` as dumped in
  JHNUL/home-server-apps ``messages.md``; ``online`` ``true``.
- A Home Assistant discovery sensor: the multi-value example of the HA MQTT discovery docs
  (``homeassistant/sensor/sensorBedroomT/config``, state ``{"temperature": 23.20, "humidity": 43.70}``).

Values drift as a bounded random walk; the smoke detector goes ``clear -> smoke -> clear`` and does a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiomqtt
import msgspec

log = logging.getLogger(__name__)

Z2M: Final = "zigbee2mqtt"
AQARA_IEEE: Final = "0x00158d0001a2b3c4"
AQARA_NAME: Final = "living_room/weather"  # a slash in the friendly name, as Z2M allows
SMOKE_IEEE: Final = "0x00158d000ab1c2d3"
SMOKE_NAME: Final = "hallway/smoke"
COORDINATOR_IEEE: Final = "0x00124b00120144ae"
TASMOTA_TOPIC: Final = "tasmota_1A2B3C"
SHELLY_PREFIX: Final = "shellyhtg3-b8d61a8b17cc"
HA_STATE_TOPIC: Final = "homeassistant/sensor/sensorBedroom/state"

# The device ids the MQTT decoder gives these devices (what a test or the demo should expect to see).
AQARA_ID: Final = f"mqtt:{AQARA_IEEE}"
SMOKE_ID: Final = f"mqtt:{SMOKE_IEEE}"
TASMOTA_SENSOR_ID: Final = f"mqtt:tasmota:{TASMOTA_TOPIC.lower()}:am2301"
SHELLY_ID: Final = f"mqtt:shelly:{SHELLY_PREFIX}"
HA_ID: Final = "mqtt:ha:bedroom01ae"

SmokeScript = Literal["clear", "smoke", "test"]


@dataclass(frozen=True, slots=True)
class SimMessage:
    topic: str
    payload: bytes
    retain: bool = False

    def json(self) -> Any:
        return msgspec.json.decode(self.payload)


def _json(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


class _Walk:
    """A bounded random walk."""

    def __init__(self, rng: random.Random, value: float, low: float, high: float, step: float) -> None:
        self._rng, self.value, self._low, self._high, self._step = rng, value, low, high, step

    def next(self) -> float:
        self.value = min(self._high, max(self._low, self.value + self._rng.uniform(-self._step, self._step)))
        return self.value


class SimulatedHome:
    """The devices of one simulated home; deterministic for a given seed."""

    def __init__(self, seed: int | None = 0) -> None:
        rng = random.Random(seed)
        self._rng = rng
        self.temperature = _Walk(rng, 21.5, 17.0, 26.0, 0.3)
        self.humidity = _Walk(rng, 45.0, 25.0, 70.0, 1.0)
        self.pressure = _Walk(rng, 1005.0, 980.0, 1030.0, 0.5)
        self.battery = 97.0
        self.smoke_state: SmokeScript = "clear"

    def announce(self) -> list[SimMessage]:
        """Retained messages a real installation keeps on the broker: bridge state and device list, LWTs,
        availability and HA discovery configs."""
        exposes_th = [
            {"type": "numeric", "name": "temperature", "property": "temperature", "unit": "°C", "access": 1},
            {"type": "numeric", "name": "humidity", "property": "humidity", "unit": "%", "access": 1},
            {"type": "numeric", "name": "pressure", "property": "pressure", "unit": "hPa", "access": 1},
            {"type": "numeric", "name": "battery", "property": "battery", "unit": "%", "access": 1},
            {"type": "numeric", "name": "voltage", "property": "voltage", "unit": "mV", "access": 1},
        ]
        exposes_smoke = [
            {"type": "binary", "name": "smoke", "property": "smoke", "value_on": True, "value_off": False},
            {"type": "binary", "name": "battery_low", "property": "battery_low", "value_on": True},
            {"type": "binary", "name": "tamper", "property": "tamper", "value_on": True},
            {"type": "numeric", "name": "smoke_density", "property": "smoke_density", "access": 1},
            {"type": "binary", "name": "test", "property": "test", "value_on": True, "value_off": False},
        ]
        devices = [
            {"ieee_address": COORDINATOR_IEEE, "type": "Coordinator", "network_address": 0,
             "friendly_name": "Coordinator", "supported": True, "definition": None, "interview_completed": True},
            {"ieee_address": AQARA_IEEE, "type": "EndDevice", "network_address": 8826, "friendly_name": AQARA_NAME,
             "supported": True, "power_source": "Battery", "model_id": "lumi.weather", "interview_completed": True,
             "definition": {"model": "WSDCGQ11LM", "vendor": "Aqara",
                            "description": "Temperature, humidity and pressure sensor", "exposes": exposes_th}},
            {"ieee_address": SMOKE_IEEE, "type": "EndDevice", "network_address": 40310, "friendly_name": SMOKE_NAME,
             "supported": True, "power_source": "Battery", "model_id": "lumi.sensor_smoke",
             "interview_completed": True,
             "definition": {"model": "JTYJ-GD-01LM/BW", "vendor": "Xiaomi",
                            "description": "Mijia Honeywell smoke detector", "exposes": exposes_smoke}},
        ]  # fmt: skip
        ha_device = {"identifiers": ["bedroom01ae"], "name": "Bedroom", "manufacturer": "Example sensors Ltd.",
                     "model": "K9", "serial_number": "12AE3010545", "hw_version": "1.01a",
                     "sw_version": "2024.1.0"}  # fmt: skip
        ha_temp = {"device_class": "temperature", "state_topic": HA_STATE_TOPIC, "unit_of_measurement": "°C",
                   "value_template": "{{ value_json.temperature}}", "unique_id": "temp01ae",
                   "device": ha_device}  # fmt: skip
        ha_hum = {"device_class": "humidity", "state_topic": HA_STATE_TOPIC, "unit_of_measurement": "%",
                  "value_template": "{{ value_json.humidity}}", "unique_id": "hum01ae",
                  "device": ha_device}  # fmt: skip
        return [
            SimMessage(f"{Z2M}/bridge/state", _json({"state": "online"}), retain=True),
            SimMessage(f"{Z2M}/bridge/devices", _json(devices), retain=True),
            SimMessage(f"{Z2M}/{AQARA_NAME}/availability", _json({"state": "online"}), retain=True),
            SimMessage(f"{Z2M}/{SMOKE_NAME}/availability", _json({"state": "online"}), retain=True),
            SimMessage(f"tele/{TASMOTA_TOPIC}/LWT", b"Online", retain=True),
            SimMessage(f"{SHELLY_PREFIX}/online", b"true", retain=True),
            SimMessage("homeassistant/sensor/sensorBedroomT/config", _json(ha_temp), retain=True),
            SimMessage("homeassistant/sensor/sensorBedroomH/config", _json(ha_hum), retain=True),
        ]

    def tick(self) -> list[SimMessage]:
        """One round of sensor reports with drifted values."""
        temp, hum, press = self.temperature.next(), self.humidity.next(), self.pressure.next()
        self.battery = max(1.0, self.battery - 0.01)
        voltage = int(2800 + self.battery * 2)
        time_str = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        aqara = {"battery": round(self.battery), "humidity": round(hum, 2), "linkquality": 72,
                 "power_outage_count": 11574, "pressure": round(press, 1), "temperature": round(temp, 2),
                 "voltage": voltage}  # fmt: skip
        tasmota = {"Time": time_str, "AM2301": {"Temperature": round(temp - 0.4, 1), "Humidity": round(hum + 2, 1)},
                   "TempUnit": "C"}  # fmt: skip
        shelly_t = round(temp + 0.3, 1)
        return [
            SimMessage(f"{Z2M}/{AQARA_NAME}", _json(aqara)),
            SimMessage(f"tele/{TASMOTA_TOPIC}/SENSOR", _json(tasmota)),
            SimMessage(
                f"{SHELLY_PREFIX}/status/temperature:0",
                _json({"id": 0, "tC": shelly_t, "tF": round(shelly_t * 9 / 5 + 32, 1)}),
            ),
            SimMessage(f"{SHELLY_PREFIX}/status/humidity:0", _json({"id": 0, "rh": round(hum - 1, 1)})),
            SimMessage(
                f"{SHELLY_PREFIX}/status/devicepower:0",
                _json({"id": 0, "battery": {"V": 5.46, "percent": 73}, "external": {"present": False}}),
            ),
            # HA-style devices usually retain their state; it also reaches a client that subscribes late.
            SimMessage(
                HA_STATE_TOPIC, _json({"temperature": round(temp + 1.0, 2), "humidity": round(hum, 2)}), retain=True
            ),
        ]

    def smoke(self, state: SmokeScript) -> SimMessage:
        """The JTYJ-GD-01LM/BW's merged Zigbee2MQTT state in ``state``."""
        self.smoke_state = state
        payload = {"battery": 100, "voltage": 3115, "smoke_density": 2 if state != "smoke" else 37,
                   "linkquality": 94, "smoke": state == "smoke", "test": state == "test"}  # fmt: skip
        return SimMessage(f"{Z2M}/{SMOKE_NAME}", _json(payload))


def scripted_scene(seed: int = 0) -> list[SimMessage]:
    """A fixed scene: announcements, one round of readings, and the smoke detector going clear, smoke, clear,
    test, clear."""
    home = SimulatedHome(seed)
    scene = home.announce() + home.tick()
    scene += [home.smoke(s) for s in ("clear", "smoke", "clear", "test", "clear")]
    return scene


async def publish(client: aiomqtt.Client, messages: list[SimMessage]) -> None:
    for message in messages:
        await client.publish(message.topic, message.payload, qos=1, retain=message.retain)


async def publish_scene(host: str, port: int, *, seed: int = 0) -> list[SimMessage]:
    """Publishes :func:`scripted_scene` and returns what it sent."""
    scene = scripted_scene(seed)
    async with aiomqtt.Client(host, port, identifier=f"kotihub-sim-{random.getrandbits(32):08x}") as client:
        await publish(client, scene)
    return scene


async def run_simulator(
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    interval: float = 5.0,
    alarm_after: float | None = None,
    seed: int | None = None,
) -> None:
    """Publishes the simulated home until ``stop`` is set: announcements, then readings every ``interval``
    seconds; if ``alarm_after`` is given, the smoke detector raises an alarm after that many seconds, clears it
    one interval later, and then runs a test. Survives broker restarts."""
    home = SimulatedHome(seed)
    loop = asyncio.get_running_loop()
    started = loop.time()
    script: list[SmokeScript] = ["smoke", "clear", "test", "clear"] if alarm_after is not None else []
    client = aiomqtt.Client(host, port, identifier=f"kotihub-sim-{random.getrandbits(32):08x}")
    while not stop.is_set():
        try:
            async with client:
                await publish(client, [*home.announce(), home.smoke(home.smoke_state)])
                while not stop.is_set():
                    await publish(client, home.tick())
                    if script and alarm_after is not None and loop.time() - started >= alarm_after:
                        await publish(client, [home.smoke(script.pop(0))])
                    # The interval is the simulator's own pace; `stop` ends the wait early.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=interval)
        except aiomqtt.MqttError as exc:
            log.info("simulator lost the broker (%s); reconnecting", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(interval, 1.0))
