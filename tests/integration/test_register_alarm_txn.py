"""The alarm's transaction in two round trips (cloud_sync/register/alarm_txn.py, docs/scale.md "Run I") stores what
the Python path stores, keeps its promises, and stays at two round trips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.register.registry import Registry
from tests.support.alarm_home import AlarmHome, make_home, open_registry, smoke
from tests.support.pgtrips import RoundTrips


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    reg = open_registry(tmp_path / "register", postgres_url)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def home(registry: Registry) -> AlarmHome:
    return make_home(registry)


def test_a_smoke_alarm_is_two_round_trips_from_checkout_to_commit(home: AlarmHome) -> None:
    trips = RoundTrips(home.registry.urgent_engine)
    ack = home.send([smoke(0)], pipelined=False)
    python = trips.take()
    assert (ack.stored, ack.duplicates) == (1, 0)
    ack = home.send([smoke(1)])
    piped = trips.take()
    assert (ack.stored, ack.duplicates) == (1, 0)
    # The counter counts: the Python path waits for each statement (BEGIN ... COMMIT).
    assert python.round_trips >= 8, python
    assert piped.round_trips == 2, piped
    # A resend (nothing new stored, the alarm already open) costs the same.
    ack = home.send([smoke(1)])
    assert (ack.stored, ack.duplicates, trips.take().round_trips) == (0, 1, 2)
