"""The ``[drivers.mqtt]`` table and the reconnect backoff."""

from __future__ import annotations

import msgspec
import pytest

from drivers import driver_class
from drivers.mqtt.config import MqttConfig
from drivers.mqtt.decoders import Families, MqttDecoder
from gateway.backoff import Backoff


def test_registry_names_the_mqtt_driver_and_its_config() -> None:
    cls = driver_class("mqtt")
    assert cls.name == "mqtt"
    assert cls.Config is MqttConfig


def test_defaults_enable_every_family() -> None:
    config = msgspec.convert({}, MqttConfig)
    assert config.families() == Families()
    assert (config.host, config.port, config.tls, config.dedupe_window) == ("127.0.0.1", 1883, False, 5.0)


def test_families_can_be_disabled_and_reprefixed() -> None:
    table = {
        "zigbee2mqtt": {"prefix": "z2m/house"},
        "tasmota": {"enabled": False},
        "shelly": {"prefixes": ["+", "garage/shelly"]},
        "homeassistant": {"enabled": False},
    }
    families = msgspec.convert(table, MqttConfig).families()
    assert families == Families(
        zigbee2mqtt="z2m/house", homeassistant=None, tasmota=None, shelly=("+", "garage/shelly")
    )
    subs = MqttDecoder(families).subscriptions()
    assert subs[:2] == ["z2m/house/bridge/devices", "z2m/house/#"]
    assert "garage/shelly/status/+" in subs
    assert not any(s.startswith(("tele/", "homeassistant/")) for s in subs)


@pytest.mark.parametrize(
    "table",
    [
        {"password": "hunter2"},  # secrets never come from the config file
        {"port": 0},
        {"port": 70000},
        {"keepalive": 1},
        {"reconnect_min": 10.0, "reconnect_max": 1.0},
        {"reconnect_min": 0},
        {"dedupe_window": -1},
        {"zigbee2mqtt": {"prefix": "zigbee2mqtt/#"}},
        {"zigbee2mqtt": {"prefix": "trailing/"}},
        {"shelly": {"prefixes": ["a/+/b"]}},
        {"tls": False, "ca_file": "/etc/ssl/ca.pem"},
        {"zigbee2mqtt": {"enabled": True, "bogus": 1}},
    ],
)
def test_invalid_tables_are_rejected(table: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(table, MqttConfig)


def test_backoff_grows_caps_and_resets() -> None:
    highs = Backoff(1.0, 8.0, uniform=lambda lo, hi: hi)
    assert [highs.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    highs.reset()
    assert highs.next() == 1.0
    lows = Backoff(1.0, 8.0, uniform=lambda lo, hi: lo)
    assert [lows.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_jitter_stays_in_bounds() -> None:
    backoff = Backoff(0.5, 30.0)
    for attempt in range(200):
        step = min(30.0, 0.5 * 2**attempt)
        assert step / 2 <= backoff.next() <= step


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="minimum"):
        Backoff(0.0, 1.0)
