"""Property tests: whatever arrives on any topic, the MQTT decoder returns a value and never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mqtt.decoders import Decoded, MqttDecoder
from gateway.model import UNITS, Quantity, SmokeState
from kotihub_tools.simulators.mqtt import scripted_scene

TOPICS = [
    "zigbee2mqtt/living_room/weather",
    "zigbee2mqtt/0x00158d0001a2b3c4",
    "zigbee2mqtt/hallway/smoke",
    "zigbee2mqtt/hallway/smoke/availability",
    "zigbee2mqtt/bridge/devices",
    "zigbee2mqtt/bridge/state",
    "homeassistant/sensor/sensorBedroomT/config",
    "homeassistant/binary_sensor/node/smoke/config",
    "homeassistant/sensor/sensorBedroom/state",
    "tele/tasmota_1A2B3C/SENSOR",
    "tele/tasmota_1A2B3C/LWT",
    "shellyhtg3-b8d61a8b17cc/status/temperature:0",
    "shellyhtg3-b8d61a8b17cc/status/devicepower:0",
    "shellyplussmoke-a8032ab12345/status/smoke:0",
    "shellyhtg3-b8d61a8b17cc/events/rpc",
    "shellyhtg3-b8d61a8b17cc/online",
]

topics = st.one_of(st.sampled_from(TOPICS), st.text(max_size=60))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
# Keys the decoders look for, so generated objects reach the interesting branches.
KEYS = ["temperature", "humidity", "smoke", "test", "trouble", "tamper", "battery_low", "battery", "voltage",
        "illuminance", "illuminance_lux", "state", "ieee_address", "friendly_name", "definition", "exposes",
        "Temperature", "Humidity", "Pressure", "TempUnit", "PressureUnit", "AM2301", "tC", "rh", "alarm", "method",
        "params", "events", "component", "event", "device_class", "state_topic", "value_template",
        "unit_of_measurement", "device", "identifiers", "unique_id", "payload_on", "stat_t", "~"]  # fmt: skip
shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["online", "C", "F", "temperature"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=8),
    max_leaves=40,
)


def _check(out: Decoded) -> None:
    assert isinstance(out, Decoded)
    # The decoder's last-resort guard turns a bug into `decoder error`; that must never be needed.
    assert not (out.bad or "").startswith("decoder error"), out.bad
    for reading in out.readings:
        assert isinstance(reading.quantity, Quantity)
        assert reading.quantity in UNITS
        assert reading.value == reading.value  # never NaN
    for event in out.events:
        if event.kind.value == "smoke":
            assert event.state in {s.value for s in SmokeState}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, payload=st.binary(max_size=300))
def test_random_bytes_never_raise(topic: str, payload: bytes) -> None:
    _check(MqttDecoder().decode(topic, payload, 1.0))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, value=json_values)
def test_random_json_never_raises(topic: str, value: Any) -> None:
    _check(MqttDecoder().decode(topic, json.dumps(value).encode(), 1.0))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(st.sampled_from(TOPICS), shaped), min_size=1, max_size=8))
def test_shaped_json_sequences_never_raise(messages: list[tuple[str, Any]]) -> None:
    # One decoder across messages, so state built by one (device maps, HA entities) meets junk in the next.
    decoder = MqttDecoder()
    for i, (topic, value) in enumerate(messages):
        _check(decoder.decode(topic, json.dumps(value).encode(), float(i)))


@settings(max_examples=50)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_simulated_scenes_decode_cleanly(seed: int) -> None:
    decoder = MqttDecoder()
    for message in scripted_scene(seed):
        out = decoder.decode(message.topic, message.payload, 1.0)
        assert out.bad is None
        assert out.handled
