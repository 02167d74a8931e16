"""Golden vectors from real devices and reference test suites (tests/vectors/ble/*.json), decoded to the value."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.ble.common import Decoded, Rejected, ReplayState
from drivers.ble.decode import decode_advertisement
from gateway.model import Lane
from tests.support.ble_vectors import all_vectors

VECTORS = all_vectors()


def test_every_vector_names_its_source() -> None:
    assert len(VECTORS) >= 40
    for vector in VECTORS:
        assert vector["source"].strip(), vector["name"]


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{v['name']}" for v in VECTORS])
def test_vector_decodes_to_reference_values(vector: dict[str, Any]) -> None:
    results = decode_advertisement(
        vector["address"],
        vector["service_data"],
        vector["manufacturer_data"],
        bindkey=vector["key"],
        state=ReplayState(),
        ts=1000.0,
    )
    assert len(results) == 1
    (result,) = results
    expect = vector["expect"]
    if "rejected" in expect:
        assert isinstance(result, Rejected)
        assert result.reason == expect["rejected"]
        return
    assert isinstance(result, Decoded), result
    assert result.note is None
    assert result.kind == expect["kind"]
    assert result.sleepy is expect.get("sleepy", False)
    if "model" in expect:
        assert result.model == expect["model"]
    if "fmt" in expect:
        assert result.fmt == expect["fmt"]
    values = {r.quantity.value: r.value for r in result.readings}
    assert values == pytest.approx(expect["readings"], abs=1e-9)
    assert len(values) == len(result.readings)  # no quantity reported twice
    assert [[e.kind.value, e.state] for e in result.events] == expect.get("events", [])
    expected_id = "ble:" + vector["address"].lower()
    assert all(r.device_id == expected_id and r.ts == 1000.0 for r in result.readings)
    assert all(e.device_id == expected_id for e in result.events)
    for event in result.events:
        assert (event.lane is Lane.ALARM) == (event.kind == "smoke")
