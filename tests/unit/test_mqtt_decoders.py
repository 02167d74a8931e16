"""The MQTT decoders: golden vectors from real devices, smoke semantics, duplicates, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from drivers.mqtt.decoders import Decoded, Families, MqttDecoder
from drivers.mqtt.smoke import z2m_smoke_state
from gateway.model import EventKind, Quantity, SmokeState

VECTORS = Path(__file__).parent.parent / "vectors" / "mqtt"


def _load() -> list[Any]:
    params = []
    for path in sorted(VECTORS.glob("*.json")):
        for vector in json.loads(path.read_text())["vectors"]:
            params.append(pytest.param(vector, id=f"{path.stem}:{vector['name']}"))
    return params


def _decoder(families: dict[str, Any] | None = None) -> MqttDecoder:
    base = msgspec.structs.asdict(Families())
    base.update(families or {})
    return MqttDecoder(msgspec.convert(base, Families))


@pytest.mark.parametrize("vector", _load())
def test_golden_vector(vector: dict[str, Any]) -> None:
    assert vector["source"], "every vector names its source"
    decoder = _decoder(vector.get("families"))
    for message in vector["setup"]:
        setup = decoder.decode(message["topic"], message["payload"].encode(), 1000.0)
        assert setup.bad is None, setup.bad
    out = decoder.decode(vector["topic"], vector["payload"].encode(), 1001.0)
    assert out.bad is None
    assert out.handled
    got = sorted((r.device_id, r.quantity.value, r.value) for r in out.readings)
    want = sorted((r["device_id"], r["quantity"], r["value"]) for r in vector["readings"])
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
    assert all(r.ts == 1001.0 for r in out.readings)
    events = [(e.device_id, e.kind.value, e.state) for e in out.events]
    assert events == [(e["device_id"], e["kind"], e["state"]) for e in vector["events"]]
    if "devices" in vector:
        assert {d.device_id for d in out.devices} >= set(vector["devices"])
    if "subscribe" in vector:
        assert list(out.subscribe) == vector["subscribe"]


def _z2m_with_devices() -> MqttDecoder:
    decoder = MqttDecoder()
    vectors = json.loads((VECTORS / "zigbee2mqtt.json").read_text())["vectors"]
    devices = vectors[0]["setup"][0]["payload"].encode()
    assert decoder.decode("zigbee2mqtt/bridge/devices", devices, 0.0).bad is None
    return decoder


def _smoke(state: dict[str, Any]) -> bytes:
    return json.dumps({"battery": 100, "voltage": 3115, "linkquality": 94, **state}).encode()


SMOKE_TOPIC = "zigbee2mqtt/hallway/smoke"
SMOKE_ID = "mqtt:0x00158d000ab1c2d3"


def _smoke_events(out: Decoded) -> list[str]:
    return [e.state for e in out.events if e.kind is EventKind.SMOKE]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"smoke": False}, SmokeState.CLEAR),
        ({"smoke": True}, SmokeState.SMOKE),
        ({"smoke": False, "test": True}, SmokeState.TEST),
        ({"smoke": True, "test": True}, SmokeState.TEST),
        ({"smoke": False, "trouble": True}, SmokeState.FAULT),
        ({"smoke": False, "fault": True}, SmokeState.FAULT),
        ({"smoke": False, "battery_defect": True}, SmokeState.FAULT),
        ({"smoke": True, "trouble": True}, SmokeState.SMOKE),
        ({"smoke": False, "tamper": True, "battery_low": True}, SmokeState.TAMPER),
        ({"smoke": False, "battery_low": True}, SmokeState.BATTERY_LOW),
        ({"smoke": "true"}, None),
        ({"smoke": False, "test": 1}, None),
    ],
)
def test_smoke_state_semantics(flags: dict[str, Any], expected: SmokeState | None) -> None:
    assert z2m_smoke_state(flags) is expected


def test_fault_is_never_smoke() -> None:
    decoder = _z2m_with_devices()
    out = decoder.decode(SMOKE_TOPIC, _smoke({"smoke": False, "trouble": True}), 1.0)
    assert _smoke_events(out) == ["fault"]
    assert SmokeState.SMOKE.value not in _smoke_events(out)


def test_test_button_is_test_not_alarm() -> None:
    decoder = _z2m_with_devices()
    out = [decoder.decode(SMOKE_TOPIC, _smoke(s), t) for t, s in enumerate(
        [{"smoke": False}, {"smoke": False, "test": True}, {"smoke": False, "test": False}]
    )]  # fmt: skip
    assert [_smoke_events(o) for o in out] == [["clear"], ["test"], ["clear"]]


def test_smoke_transitions_are_never_suppressed() -> None:
    decoder = _z2m_with_devices()
    sequence = [False, True, False, True, True, False]
    states = []
    for i, smoke in enumerate(sequence):
        # All within a fraction of the dedupe window.
        states += _smoke_events(decoder.decode(SMOKE_TOPIC, _smoke({"smoke": smoke}), 100.0 + i * 0.01))
    assert states == ["clear", "smoke", "clear", "smoke", "clear"]


def test_smoke_event_rides_the_alarm_lane_and_is_stamped_with_now() -> None:
    decoder = _z2m_with_devices()
    out = decoder.decode(SMOKE_TOPIC, _smoke({"smoke": True, "smoke_density": 37}), 1234.5)
    (event,) = out.events
    assert (event.device_id, event.kind, event.state, event.ts) == (SMOKE_ID, EventKind.SMOKE, "smoke", 1234.5)
    assert event.attrs["smoke_density"] == 37
    assert event.lane.value == "alarm"


AQARA = b'{"battery":97,"humidity":58.5,"linkquality":72,"pressure":1001.8,"temperature":22.4,"voltage":2995}'


def test_duplicates_within_window_are_dropped_and_counted() -> None:
    decoder = _z2m_with_devices()
    first = decoder.decode("zigbee2mqtt/living_room/weather", AQARA, 10.0)
    assert len(first.readings) == 5
    # Koenkk/zigbee2mqtt#21808: the same payload 5x/s.
    for i in range(1, 5):
        again = decoder.decode("zigbee2mqtt/living_room/weather", AQARA, 10.0 + i * 0.2)
        assert again.readings == ()
        assert again.duplicates == 5


def test_duplicates_after_window_are_emitted_again() -> None:
    decoder = MqttDecoder(dedupe_window=5.0)
    decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", AQARA, 10.0)
    assert decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", AQARA, 14.9).readings == ()
    assert len(decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", AQARA, 15.1).readings) == 5


def test_only_changed_values_pass_within_window() -> None:
    decoder = _z2m_with_devices()
    decoder.decode("zigbee2mqtt/living_room/weather", AQARA, 10.0)
    changed = AQARA.replace(b'"temperature":22.4', b'"temperature":22.5')
    out = decoder.decode("zigbee2mqtt/living_room/weather", changed, 10.5)
    assert [(r.quantity, r.value) for r in out.readings] == [(Quantity.TEMPERATURE, 22.5)]
    assert out.duplicates == 4


def test_clock_stepping_back_does_not_mute_a_device() -> None:
    decoder = MqttDecoder(dedupe_window=5.0)
    decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", AQARA, 1000.0)
    assert len(decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", AQARA, 10.0).readings) == 5


def test_rename_keeps_the_ieee_id() -> None:
    decoder = _z2m_with_devices()
    renamed = json.loads((VECTORS / "zigbee2mqtt.json").read_text())["vectors"][0]["setup"][0]["payload"]
    renamed = renamed.replace('"living_room/weather"', '"olohuone"')
    decoder.decode("zigbee2mqtt/bridge/devices", renamed.encode(), 1.0)
    out = decoder.decode("zigbee2mqtt/olohuone", AQARA, 2.0)
    assert {r.device_id for r in out.readings} == {"mqtt:0x00158d0001a2b3c4"}
    # The old name no longer maps to the device.
    old = decoder.decode("zigbee2mqtt/living_room/weather", AQARA, 3.0)
    assert old.readings == () and old.hold


def test_bridge_devices_lists_devices_and_kinds() -> None:
    decoder = MqttDecoder()
    payload = json.loads((VECTORS / "zigbee2mqtt.json").read_text())["vectors"][0]["setup"][0]["payload"]
    out = decoder.decode("zigbee2mqtt/bridge/devices", payload.encode(), 1.0)
    kinds = {d.device_id: d.kind.value for d in out.devices}
    assert kinds == {
        "mqtt:0x00158d0001a2b3c4": "sensor",
        "mqtt:0x00158d0002b3c4d5": "sensor",
        SMOKE_ID: "smoke_detector",
        "mqtt:0x0015bc001e00a1b2": "smoke_detector",
    }
    aqara = next(d for d in out.devices if d.device_id == "mqtt:0x00158d0001a2b3c4")
    assert (aqara.model, aqara.manufacturer, aqara.name) == ("WSDCGQ11LM", "Aqara", "living_room/weather")


def test_unmapped_friendly_name_is_held_never_filed_under_an_invented_id() -> None:
    decoder = MqttDecoder()
    out = decoder.decode("zigbee2mqtt/Anna's room", b'{"temperature":21.0}', 1.0)
    assert out.hold and (out.readings, out.devices, out.events) == ((), (), ())
    avail = decoder.decode("zigbee2mqtt/Anna's room/availability", b'{"state":"online"}', 1.0)
    assert avail.hold and avail.events == ()
    # Z2M's default name is the IEEE address itself: that resolves without the map.
    ieee = decoder.decode("zigbee2mqtt/0x00158d0001A2B3C4", b'{"temperature":21.0}', 1.0)
    assert {r.device_id for r in ieee.readings} == {"mqtt:0x00158d0001a2b3c4"}


def test_the_name_map_is_persisted_and_restored() -> None:
    first = _z2m_with_devices()
    devices = json.loads((VECTORS / "zigbee2mqtt.json").read_text())["vectors"][0]["setup"][0]["payload"]
    out = MqttDecoder().decode("zigbee2mqtt/bridge/devices", devices.encode(), 1.0)
    assert out.remapped
    ((ns, key, blob),) = out.persist
    assert (ns, key) == ("mqtt.z2m", "zigbee2mqtt") and blob is not None
    # A fresh decoder (a restarted hub) resolves names before any bridge/devices arrives.
    second = MqttDecoder()
    second.restore({"zigbee2mqtt": blob}, {})
    a = first.decode("zigbee2mqtt/living_room/weather", AQARA, 2.0)
    b = second.decode("zigbee2mqtt/living_room/weather", AQARA, 2.0)
    assert a.readings == b.readings and a.readings
    assert not b.hold


def test_ha_configs_are_persisted_once_and_restored() -> None:
    vectors = json.loads((VECTORS / "homeassistant.json").read_text())["vectors"]
    config = vectors[0]["payload"].encode()
    topic = "homeassistant/sensor/sensorBedroomT/config"
    first = MqttDecoder()
    out = first.decode(topic, config, 1.0)
    assert out.persist == (("mqtt.ha", "sensor/sensorBedroomT/config", config),)
    assert first.decode(topic, config, 2.0).persist == ()  # the retained copy on every connect: no rewrite
    second = MqttDecoder()
    second.restore({}, {"sensor/sensorBedroomT/config": config})
    state_topic = "homeassistant/sensor/sensorBedroom/state"
    assert state_topic in second.subscriptions()
    assert len(second.decode(state_topic, b'{"temperature": 23.2}', 3.0).readings) == 1
    assert first.decode(topic, b"", 4.0).persist == (("mqtt.ha", "sensor/sensorBedroomT/config", None),)


def test_ha_empty_config_removes_the_entity() -> None:
    decoder = MqttDecoder()
    vectors = json.loads((VECTORS / "homeassistant.json").read_text())["vectors"]
    config = vectors[0]["payload"].encode()
    decoder.decode("homeassistant/sensor/sensorBedroomT/config", config, 1.0)
    state_topic = "homeassistant/sensor/sensorBedroom/state"
    assert len(decoder.decode(state_topic, b'{"temperature": 23.2}', 2.0).readings) == 1
    assert decoder.decode("homeassistant/sensor/sensorBedroomT/config", b"", 3.0).bad is None
    after = decoder.decode(state_topic, b'{"temperature": 23.4}', 4.0)
    assert after.readings == ()
    assert state_topic not in decoder.subscriptions()


def test_ha_fahrenheit_and_raw_value() -> None:
    decoder = MqttDecoder()
    config = {"device_class": "temperature", "state_topic": "garage/temp", "unit_of_measurement": "°F",
              "unique_id": "garage_t", "device": {"identifiers": "garage01"}}  # fmt: skip
    out = decoder.decode("homeassistant/sensor/garage/t/config", json.dumps(config).encode(), 1.0)
    assert out.subscribe == ("garage/temp",)
    reading = decoder.decode("garage/temp", b"68.0", 2.0).readings[0]
    assert reading.device_id == "mqtt:ha:garage01"
    assert reading.value == pytest.approx(20.0)


def test_ha_unsupported_template_is_rejected() -> None:
    config = {"device_class": "temperature", "state_topic": "x/state", "unique_id": "u1",
              "value_template": "{{ (value_json.t | float) * 2 }}"}  # fmt: skip
    out = MqttDecoder().decode("homeassistant/sensor/x/config", json.dumps(config).encode(), 1.0)
    assert out.bad == "unsupported value_template"
    assert out.subscribe == ()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("zigbee2mqtt/living_room/weather", b"not json"),
        ("zigbee2mqtt/living_room/weather", b"[1,2,3]"),
        ("zigbee2mqtt/living_room/weather", b'{"temperature":"warm"}'),
        ("zigbee2mqtt/hallway/smoke", b'{"smoke":"yes"}'),
        ("zigbee2mqtt/bridge/devices", b'{"not":"a list"}'),
        ("zigbee2mqtt/x/availability", b'{"state":"maybe"}'),
        ("zigbee2mqtt/bridge/state", b"\xff\xfe"),
        ("homeassistant/sensor/a/config", b"{broken"),
        ("tele/t1/SENSOR", b'"just a string"'),
        ("tele/t1/SENSOR", b'{"AM2301":{"Temperature":NaN}}'),
        ("tele/t1/LWT", b"Maybe"),
        ("shellyhtg3-b8d61a8b17cc/status/temperature:0", b'{"id":0,"tC":"20"}'),
        ("shellyhtg3-b8d61a8b17cc/events/rpc", b'{"method":"NotifyStatus"}'),
        ("shellyhtg3-b8d61a8b17cc/online", b"perhaps"),
    ],
)
def test_malformed_payloads_yield_nothing_but_a_reason(topic: str, payload: bytes) -> None:
    out = _z2m_with_devices().decode(topic, payload, 5.0)
    assert out.bad
    assert out.readings == ()
    assert out.events == ()


@pytest.mark.parametrize(
    "topic",
    ["some/other/thing", "zigbee2mqtt/bridge/info", "zigbee2mqtt/x/set", "homeassistant/status", "tele/t1/STATE"],
)
def test_unknown_or_uninteresting_topics_yield_nothing(topic: str) -> None:
    out = MqttDecoder().decode(topic, b'{"state":"online"}', 1.0)
    assert (out.readings, out.events, out.devices, out.bad) == ((), (), (), None)


def test_unknown_topic_is_not_handled() -> None:
    assert MqttDecoder().decode("some/other/thing", b"{}", 1.0).handled is False
    assert MqttDecoder().decode("zigbee2mqtt/bridge/info", b"{}", 1.0).handled is True


def test_oversized_payload_is_rejected() -> None:
    decoder = MqttDecoder(max_payload=1024)
    out = decoder.decode("zigbee2mqtt/x", b'{"temperature":1' + b" " * 2000 + b"}", 1.0)
    assert out.bad == "payload too large"


def test_disabled_family_is_ignored() -> None:
    decoder = MqttDecoder(Families(tasmota=None))
    assert decoder.decode("tele/t1/LWT", b"Online", 1.0).handled is False
    assert "tele/+/SENSOR" not in decoder.subscriptions()


def test_subscriptions_put_the_device_list_first() -> None:
    subs = MqttDecoder().subscriptions()
    assert subs.index("zigbee2mqtt/bridge/devices") < subs.index("zigbee2mqtt/#")
    assert {"tele/+/SENSOR", "tele/+/LWT", "+/status/+", "+/events/rpc", "homeassistant/+/+/config"} <= set(subs)


def test_device_info_is_repeated_only_after_seen_interval() -> None:
    decoder = MqttDecoder(seen_interval=60.0)
    topic = "shellyhtg3-b8d61a8b17cc/status/humidity:0"
    assert len(decoder.decode(topic, b'{"id":0,"rh":50}', 0.0).devices) == 1
    assert decoder.decode(topic, b'{"id":0,"rh":51}', 30.0).devices == ()
    assert len(decoder.decode(topic, b'{"id":0,"rh":52}', 61.0).devices) == 1


def test_ha_binary_smoke_with_default_on_off_payloads() -> None:
    decoder = MqttDecoder()
    config = {"dev_cla": "smoke", "stat_t": "~/smoke", "~": "esp/hall", "uniq_id": "hall_smoke",
              "dev": {"ids": ["esp-hall-01"], "mf": "Espressif"}}  # fmt: skip
    out = decoder.decode("homeassistant/binary_sensor/esp_hall/smoke/config", json.dumps(config).encode(), 1.0)
    assert out.subscribe == ("esp/hall/smoke",)
    assert out.devices[0].kind.value == "smoke_detector"
    states = [
        _smoke_events(decoder.decode("esp/hall/smoke", p, 2.0 + i)) for i, p in enumerate([b"OFF", b"ON", b"OFF"])
    ]
    assert states == [["clear"], ["smoke"], ["clear"]]
    assert decoder.decode("esp/hall/smoke", b"MAYBE", 9.0).bad


def test_shelly_smoke_events_distinguish_test_from_alarm() -> None:
    decoder = MqttDecoder()
    topic = "shellyplussmoke-a8032ab12345/events/rpc"

    def notify(event: str) -> bytes:
        params = {"ts": 1.0, "events": [{"component": "smoke:0", "id": 0, "event": event, "ts": 1.0}]}
        return json.dumps({"src": "shellyplussmoke-a8032ab12345", "method": "NotifyEvent", "params": params}).encode()

    states = [_smoke_events(decoder.decode(topic, notify(e), float(i))) for i, e in enumerate(
        ["alarm_test", "alarm_off", "alarm", "alarm_off"]
    )]  # fmt: skip
    assert states == [["test"], ["clear"], ["smoke"], ["clear"]]


async def test_recent_digests_survive_a_restart_and_the_oldest_go_first() -> None:
    from drivers.memory import VolatileMemory
    from drivers.mqtt.acks import RECENT_NS, RECENT_SIZE, Recent, digest

    memory = VolatileMemory()
    first = Recent()
    keys = [digest("zigbee2mqtt/x", b"%d" % i, i + 1) for i in range(RECENT_SIZE + 10)]
    for key in keys:
        first.add(key, memory)
    assert first.committed(keys[0]) is None and first.committed(keys[-1]) is not None
    second = Recent()
    second.restore(await memory.load(RECENT_NS))
    assert all(second.committed(k) is not None for k in keys[10:])  # the last RECENT_SIZE, after a restart
    second.add(digest("zigbee2mqtt/x", b"new", 1), memory)
    assert second.committed(keys[10]) is None  # the oldest went first
    assert second.committed(keys[-1]) is not None
    # The same payload delivered again later is another message (another packet identifier).
    assert digest("zigbee2mqtt/smoke", b'{"smoke":false}', 7) != digest("zigbee2mqtt/smoke", b'{"smoke":false}', 8)
