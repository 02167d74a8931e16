"""Driver health is typed (issue 15, item 4): every registered driver reports a Struct of its own, a subclass of the
port's :class:`~drivers.base.DriverHealth`, and ``kotihub status`` shows it beside the supervisor's state without
one hiding the other. The hub's and the sirens' counters are Structs too: a misspelt counter is refused."""

from __future__ import annotations

import typing
from pathlib import Path

import msgspec
import pytest

from drivers import REGISTRY, driver_class
from drivers.base import Driver, DriverCounters, DriverHealth, Link
from gateway.cli import _status_text
from gateway.hub import Hub, HubCounters
from gateway.sirens import SirenCounters
from gateway.supervisor import TaskHealth
from tests.support.stores import open_store

TASK_FIELDS = set(TaskHealth("x").view())


class Creds:
    def get(self, name: str) -> bytes | None:
        return None


def declared_health(cls: type[Driver]) -> type[DriverHealth]:
    """The return type ``cls.health`` declares (what mypy holds every caller to)."""
    declared = typing.get_type_hints(cls.health)["return"]
    is_struct = typing.get_origin(declared) is None and isinstance(declared, type)
    assert is_struct and issubclass(declared, DriverHealth), f"{cls.__name__}.health -> {declared}"
    return declared


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_driver_reports_its_own_health_struct(name: str) -> None:
    cls = driver_class(name)
    declared = declared_health(cls)
    assert declared is not DriverHealth, f"{name} reports only the base health: give it a Struct of its own"
    assert declared.__struct_config__.frozen, "health is a snapshot: a reader must not change the driver's counters"
    clash = set(declared.__struct_fields__) & TASK_FIELDS
    assert not clash, f"{name}'s health would hide the supervisor's {sorted(clash)} in kotihub status"

    health = cls(cls.Config(), Creds()).health()
    assert type(health) is declared
    assert isinstance(health.counters, DriverCounters)
    # It leaves the process as JSON and reads back as the same typed value: nothing in it is free-form.
    assert msgspec.json.decode(msgspec.json.encode(health), type=declared) == health


def test_a_driver_that_returns_something_else_is_caught() -> None:
    """The check above fails for a driver whose ``health`` is not a DriverHealth (e.g. a dict, as before)."""

    class Loose(Driver):
        name = "loose"
        Config = msgspec.Struct

        async def run(self, hub: typing.Any) -> None:
            return None

        def health(self) -> dict[str, int]:  # type: ignore[override]
            return {"messages": 0}

    with pytest.raises(AssertionError, match=r"Loose\.health"):
        declared_health(Loose)


async def test_status_shows_the_drivers_health_beside_its_task_state(tmp_path: Path) -> None:
    mqtt = driver_class("mqtt")
    driver = mqtt(mqtt.Config(), Creds())
    driver.stats.bad_payload("dev", "not JSON")
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={}, drivers=[driver])
        hub.driver_health["mqtt"] = TaskHealth("mqtt", state="restarting", restarts=2, last_error="boom")
        status = msgspec.json.decode(msgspec.json.encode(hub.summary()))
    shown = status["drivers"]["mqtt"]
    assert (shown["state"], shown["restarts"], shown["last_error"]) == ("restarting", 2, "boom")
    assert shown["counters"]["malformed"] == 1
    assert shown["connected"] is False and shown["broker_error"] == ""
    assert shown["link"] == msgspec.to_builtins(Link(check="mqtt", messages="mqtt", up=False, reason="-"))
    assert set(status["counters"]) == set(HubCounters.__struct_fields__)
    status |= {
        "hub": {"name": "h"},
        "store": {"depth": {}, "dead_letters": 0, "db_bytes": 0, "free_bytes": 0},
        "retention": {"days": 183, "horizon": None},
    }
    assert "mqtt: restarting, 2 restarts, 1 malformed, last error: boom" in _status_text(status)


def test_a_misspelt_counter_is_an_error_not_a_new_key() -> None:
    counters = HubCounters()
    with pytest.raises(AttributeError):
        counters.readings_acepted = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        SirenCounters(sonded=1)  # type: ignore[call-arg]
    counters.readings_accepted += 2
    assert msgspec.to_builtins(counters)["readings_accepted"] == 2
