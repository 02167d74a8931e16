"""When the alarm lane pings (cloud_sync/uplink/alarmroute.py): every ``alarm_keepalive_s`` after the connection last
answered or was last pinged, but never further apart than 80 % of what the register says it keeps, and not at all
when off; the register's ``Keep-Alive: timeout=N`` is read as RFC 2068 writes it, anything else ignored. No network:
the clients are never asked to connect here."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from cloud_sync import protocol as p
from cloud_sync.uplink.alarmroute import (
    FIRST_ANSWER_PINGS,
    FIRST_ANSWER_S,
    KEPT_SHARE,
    MIN_PING_INTERVAL_S,
    AlarmClient,
)
from cloud_sync.uplink.client import _keep_alive
from tests.support.alarm_client import alarm_client

URL = "https://register.example:8443"


def client() -> AlarmClient:
    return alarm_client(URL, Path("/nonexistent"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("timeout=180", 180.0),
        ("timeout=5, max=100", 5.0),
        ("max=100, Timeout = 7", 7.0),
        ("max=100", None),
        ("timeout=abc", None),
        ("timeout=-1", None),
        ("timeout=0", None),
        ("timeout=1e9", None),
        ("", None),
    ],
)
def test_the_keep_alive_header_is_read_and_anything_odd_ignored(value: str, seconds: float | None) -> None:
    assert _keep_alive({"Keep-Alive": value}) == seconds
    assert _keep_alive({}) is None


def test_no_pings_when_off() -> None:
    assert client().ping_due(0.0) is None


def test_a_connection_that_never_answered_is_pinged_at_once() -> None:
    c = client()
    assert c.ping_due(120.0) == -math.inf
    # The listener announced but not yet connected: at once too.
    c.route.announced("https://register.example:8444")
    assert c.ping_due(120.0) == -math.inf


def test_pings_come_every_interval_but_before_the_register_closes_the_connection() -> None:
    c = client()
    now = time.monotonic()
    c.main.answered_at = now
    assert c.ping_due(120.0) == now + 120.0  # the register said nothing: the hub's interval
    c.main.kept_s = 180.0
    assert c.ping_due(120.0) == now + 120.0  # 80 % of 180 is 144: the interval is shorter
    c.main.kept_s = 35.0
    assert c.ping_due(120.0) == pytest.approx(now + KEPT_SHARE * 35.0)


def test_a_register_announcing_a_tiny_keep_alive_does_not_make_the_hub_ping_in_a_loop() -> None:
    c = client()
    now = time.monotonic()
    c.main.answered_at, c.main.kept_s = now, 0.001
    assert c.ping_due(120.0) == now + MIN_PING_INTERVAL_S
    assert c.ping_due(0.5) == now + 0.5  # what the hub's own configuration asks for is kept


def test_a_failed_ping_is_not_retried_before_the_next_interval() -> None:
    c = client()
    now = time.monotonic()
    c._pinged_at = now  # the ping went, and nothing answered
    c.main.answered_at = None
    assert c.ping_due(120.0) == now + 120.0


def test_a_kept_connection_is_one_that_answered_within_the_registers_keep_alive() -> None:
    c = client().main
    assert not c.kept_alive(35.0)
    c.answered_at = time.monotonic() - 30
    assert c.kept_alive(35.0)
    c.kept_s = 20.0
    assert not c.kept_alive(35.0)
    c.close()
    assert c.answered_at is None and not c.kept_alive(35.0)


def test_an_alarms_first_answer_on_a_kept_connection_is_bounded_and_longer_on_a_slow_link() -> None:
    c = client()
    assert c._first_answer(c.main) is None  # no kept connection: the ordinary timeouts
    c.main.answered_at = time.monotonic()
    assert c._first_answer(c.main) == FIRST_ANSWER_S
    c.ping_ms = 1500.0  # a satellite link's round trip
    assert c._first_answer(c.main) == pytest.approx(FIRST_ANSWER_PINGS * 1.5)


def test_the_heartbeat_tells_the_operator_how_the_alarm_path_stands() -> None:
    c = client()
    assert c.health() == p.AlarmPathHealth()  # nothing sent yet
    c.main.answered_at, c.pings, c.ping_ms = time.monotonic(), 3, 41.26
    health = c.health()
    assert health.kept_open and health.pings == 3 and health.ping_ms == 41.3
    assert (health.failing, health.listener) == (False, "none")
    c.route.announced("https://register.example:8444")
    assert c.health().listener == "serving"
    c.route.failed("https://register.example:8444", OSError("connection refused"))
    assert c.health().listener == "resting"
    c.ping_failing = True
    assert c.health().failing
