"""Lumi gateway values to model values: smoke codes and weather sensors, from the vectors' sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivers.miio import values
from gateway.model import Quantity, SmokeState

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "miio" / "gateway_values.json").read_text())
SMOKE = VECTORS["smoke_codes"]
WEATHER = VECTORS["weather"]


def test_vectors_name_their_sources() -> None:
    assert SMOKE["source"]
    assert WEATHER["source"]


@pytest.mark.parametrize("case", SMOKE["cases"], ids=[repr(c["code"]) for c in SMOKE["cases"]])
def test_smoke_codes(case: dict[str, Any]) -> None:
    state, reason = values.smoke_state(case["code"])
    if case["state"] is None:
        assert state is None
        assert reason
    else:
        assert state is SmokeState(case["state"])
        assert reason == ""


def test_a_fault_is_never_smoke() -> None:
    faults = [code for code, state in values.SMOKE_CODES.items() if state is SmokeState.FAULT]
    assert faults == [64, 32768]
    assert all(values.smoke_state(code)[0] is not SmokeState.SMOKE for code in (*faults, 8, 2, 3, 4, 16, 128))


@pytest.mark.parametrize("case", WEATHER["cases"], ids=[str(c["raw"]) for c in WEATHER["cases"]])
def test_weather_sensor_values(case: dict[str, Any]) -> None:
    # python-miio's SubDevice.update() divides each raw value by the yaml's devisor (100) before we see it.
    status = dict(zip(values.HT_PROPERTIES, (raw / 100 for raw in case["raw"]), strict=True))
    readings, reasons = values.ht_readings("miio:lumi.x", status, 1700000000.0)
    got = {r.quantity.value: r.value for r in readings}
    assert got == case["expected"]
    assert len(reasons) == 3 - len(case["expected"])
    assert all(r.device_id == "miio:lumi.x" and r.ts == 1700000000.0 for r in readings)


def test_ht_v1_without_pressure_skips_it_quietly() -> None:
    readings, reasons = values.ht_readings("d", {"temperature": 21.5, "humidity": 40.0}, 1.0)
    assert [r.quantity for r in readings] == [Quantity.TEMPERATURE, Quantity.HUMIDITY]
    assert reasons == []


@pytest.mark.parametrize("bad", ["21.5", True, float("nan"), float("inf"), None, [1]])
def test_non_numbers_are_refused(bad: Any) -> None:
    reading, reason = values.reading("d", Quantity.TEMPERATURE, bad, 1.0)
    assert reading is None
    assert reason


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ([[1, 12]], (SmokeState.SMOKE, 12.0)),
        ([[0, 0]], (SmokeState.CLEAR, 0.0)),
        ([[64, None]], (SmokeState.FAULT, None)),
        ([[2, 0]], (SmokeState.TEST, 0.0)),
    ],
)
def test_smoke_reply(reply: Any, expected: tuple[SmokeState, float | None]) -> None:
    assert values.smoke_reply(reply) == (expected, "")


@pytest.mark.parametrize("reply", [None, [], [[1]], [[1, 2, 3]], "[[1, 2]]", [[7, 0]], [1, 12], [[1, 2]] * 2])
def test_bad_smoke_replies_are_refused(reply: Any) -> None:
    result, reason = values.smoke_reply(reply)
    assert result is None
    assert reason
