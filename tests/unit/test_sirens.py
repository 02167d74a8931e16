"""Siren logic without a broker: interconnect, clear, acknowledgement, the payloads, and the selftest check."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from drivers.mqtt.siren import SirenRelay, z2m_command
from gateway import selftest
from gateway.hub import DeviceState, Hub
from gateway.model import Category, DeviceInfo, DeviceKind, Event, EventKind
from gateway.sirens import Sirens
from tests.support.stores import open_store


class Output:
    async def sound(self, on: bool, *, wait: float = 2.0) -> int:
        return 1

    async def run(self) -> None:
        pass

    def devices(self) -> list[DeviceInfo]:
        return []


def smoke(dev: str, state: str) -> Event:
    return Event(device_id=dev, kind=EventKind.SMOKE, state=state, ts=0.0)


def test_interconnect_clear_and_acknowledgement() -> None:
    s = Sirens(Output())
    s.on_event(smoke("a", "smoke"))
    s.on_event(smoke("b", "smoke"))
    assert s.sounding
    s.on_event(smoke("a", "clear"))
    assert s.sounding, "b still reports smoke"
    s.on_event(smoke("b", "clear"))
    assert not s.sounding
    s.on_event(smoke("a", "test"))  # a test is not smoke
    s.on_event(Event(device_id="m", kind=EventKind.MOTION, state="on", ts=0.0))
    assert not s.sounding
    s.on_event(smoke("a", "smoke"))
    assert s.acknowledge() is True and not s.sounding
    assert s.acknowledge() is False
    queued = []
    while not s._wanted.empty():
        queued.append(s._wanted.get_nowait())
    assert queued == [True, False, True, False]


def test_payloads_follow_the_devices_interfaces() -> None:
    z = DeviceInfo(device_id="mqtt:0x01", driver="mqtt", kind=DeviceKind.SIREN, address="0x0015bc001e01aa01",
                   via="mqtt:zigbee2mqtt/bridge")  # fmt: skip
    topic, payload = z2m_command(z, True) or ("", b"")
    assert topic == "zigbee2mqtt/0x0015bc001e01aa01/set"
    assert json.loads(payload)["warning"]["mode"] == "fire"
    assert json.loads((z2m_command(z, False) or ("", b""))[1])["warning"]["mode"] == "stop"
    assert z2m_command(DeviceInfo(device_id="x", driver="mqtt", kind=DeviceKind.SENSOR), True) is None
    assert SirenRelay(family="tasmota", topic="t").command(True) == ("cmnd/t/POWER", b"ON")
    assert SirenRelay(family="tasmota", topic="t", channel=2).command(False) == ("cmnd/t/POWER2", b"OFF")
    g1 = SirenRelay(family="shelly", topic="shelly1-x", shelly_gen=1)
    assert g1.command(True) == ("shellies/shelly1-x/relay/0/command", b"on")


def _daemon(devices: dict[str, DeviceState], sirens: Any) -> Any:
    return SimpleNamespace(hub=SimpleNamespace(devices=devices), sirens=sirens)


def test_selftest_siren_check() -> None:
    relay = SirenRelay(family="tasmota", topic="siren-hall")
    node = DeviceInfo(device_id=relay.info().via, driver="mqtt", kind=DeviceKind.OTHER)
    devices = {relay.device_id: DeviceState(relay.info(), 0, 0), node.device_id: DeviceState(node, 0, 0)}
    assert selftest._siren_check(_daemon({}, None))["status"] == selftest.WARN
    assert selftest._siren_check(_daemon(devices, object()))["status"] == selftest.OK
    devices[node.device_id].online = False  # the relay's node went away (LWT offline)
    result = selftest._siren_check(_daemon(devices, object()))
    assert result["status"] == selftest.FAIL and result["params"]["n"] == 1


async def test_sirens_sound_even_when_the_alarm_category_is_restricted(tmp_path: Any) -> None:
    """Restriction stops processing the household's data; a siren keeps none, and safety comes first."""
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        await hub.set_restricted(Category.ALARMS, True, actor="test")
        s = Sirens(Output())
        hub.event_hooks.append(s.on_event)
        await hub.event(smoke("a", "smoke"))
        assert s.sounding
        assert hub.counters.events_restricted == 1 and hub.counters.alarms == 0
