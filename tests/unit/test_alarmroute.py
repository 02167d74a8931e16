"""The alarm URL a register announces: taken only as ``https://<the register's host>:<port>``; refused values are
logged once per value; a failed listener rests for a while, then is tried again."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.uplink.alarmroute import AlarmRoute, BadAlarmURL, check_alarm_url

MAIN = "https://register.example.fi:8443"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://register.example.fi:8444", "https://register.example.fi:8444"),
        ("https://register.example.fi:8444/", "https://register.example.fi:8444"),
        ("https://REGISTER.example.fi:8444", "https://REGISTER.example.fi:8444"),
    ],
)
def test_the_register_host_on_another_port_is_taken(value: str, expected: str) -> None:
    assert check_alarm_url(value, MAIN) == expected


@pytest.mark.parametrize(
    "value",
    [
        "http://register.example.fi:8444",  # plain HTTP
        "https://evil.example:8444",  # another host
        "https://register.example.fi.evil.example:8444",
        "https://register.example.fi@evil.example:8444",  # userinfo trick
        "https://user@register.example.fi:8444",
        "https://register.example.fi",  # no port
        "https://register.example.fi:0",
        "https://register.example.fi:70000",
        "https://register.example.fi:8444/v1/ingest",  # a path
        "https://register.example.fi:8444?x=1",
        "https://register.example.fi:8444#x",
        "wss://register.example.fi:8444",
        "https://register.example.fi:8444\n",
        "",
        "https://" + "a" * 400,
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(BadAlarmURL):
        check_alarm_url(value, MAIN)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_no_announcement_leads_anywhere_but_the_register_host(value: str) -> None:
    try:
        url = check_alarm_url(value, MAIN)
    except BadAlarmURL:
        return
    assert url.startswith("https://register.example.fi:")


def test_a_refused_value_is_logged_once_and_a_failure_rests_the_listener(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    route = AlarmRoute(MAIN, retry_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="cloud_sync.uplink.alarmroute"):
        for _ in range(5):
            route.announced("https://evil.example:8444")
        route.announced("http://register.example.fi:8444")
        route.announced("https://evil.example:8444")
    assert route.refused == 7 and route.url is None and route.target() is None
    assert len([r for r in caplog.records if "refused the alarm URL" in r.getMessage()]) == 3

    route.announced("https://register.example.fi:8444")
    assert route.target() == "https://register.example.fi:8444"
    route.failed("https://register.example.fi:8444", OSError("refused"))
    assert route.target() is None
    now[0] = 59.0
    assert route.target() is None
    now[0] = 61.0
    assert route.target() == "https://register.example.fi:8444"
    route.served("https://register.example.fi:8444")
    # A later reply without the header (the operator turned the listener off) sends alarms to the main URL again.
    route.announced(None)
    assert route.target() is None and route.url is None
