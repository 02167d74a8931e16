"""Escalation policy: defaults, validation, quiet hours and the planned steps (pure functions)."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cloud_sync.register.errors import Forbidden
from cloud_sync.register.notify import texts
from cloud_sync.register.notify.alarms import plan
from cloud_sync.register.notify.links import Links
from cloud_sync.register.notify.policy import DEFAULT_POLICY, Policy, decode_policy

PEOPLE = [
    {"member_id": "m_a", "phone": "+358401", "email": "a@x.fi", "language": "fi"},
    {"member_id": "m_b", "phone": "+358402", "email": "", "language": "en"},
]
HEL = ZoneInfo("Europe/Helsinki")


def _t(h: int, m: int = 0) -> float:
    return dt.datetime(2026, 11, 28, h, m, tzinfo=HEL).timestamp()


def test_default_smoke_plan_is_what_a_smoke_service_ships() -> None:
    jobs = plan(DEFAULT_POLICY, "al", "hh", "smoke", PEOPLE, 1000.0)
    at_once = sorted((j["channel"], j["member_id"]) for j in jobs if j["due_at"] == 1000.0)
    # SMS to every member and e-mail to those with an address, at once.
    assert at_once == [("email", "m_a"), ("sms", "m_a"), ("sms", "m_b")]
    calls = sorted((j["due_at"] - 1000.0, j["member_id"]) for j in jobs if j["channel"] == "voice")
    # After 60 s calls in order 45 s apart, repeated every 5 minutes, three rounds.
    assert calls == [(60, "m_a"), (105, "m_b"), (360, "m_a"), (405, "m_b"), (660, "m_a"), (705, "m_b")]
    desk = [j for j in jobs if j["channel"] == "desk"]
    assert len(desk) == 1 and desk[0]["due_at"] == 1600.0
    assert len({j["id"] for j in jobs}) == len(jobs), "job ids must be unique (they are the exactly-once key)"


def test_health_alerts_wait_for_the_end_of_quiet_hours_smoke_never_does() -> None:
    night = _t(3)
    health = plan(DEFAULT_POLICY, "al", "hh", "battery_low", PEOPLE, night)
    assert {j["due_at"] for j in health} == {_t(7)}
    smoke = plan(DEFAULT_POLICY, "al", "hh", "smoke", PEOPLE, night)
    assert min(j["due_at"] for j in smoke) == night
    day = _t(12)
    assert {j["due_at"] for j in plan(DEFAULT_POLICY, "al", "hh", "battery_low", PEOPLE, day)} == {day}
    # 23:30 waits for 07:00 the next morning.
    assert DEFAULT_POLICY.after_quiet_hours(_t(23, 30)) == _t(7) + 86_400


def test_device_offline_is_debounced_per_kind() -> None:
    assert DEFAULT_POLICY.offline_debounce("smoke_detector") == 600
    assert DEFAULT_POLICY.offline_debounce("sensor") == 1800
    jobs = plan(DEFAULT_POLICY, "al", "hh", "device_offline", PEOPLE, _t(12), delay=600)
    assert {j["due_at"] for j in jobs} == {_t(12) + 600}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"smoke": []}, "smoke"),
        ({"smoke": [{"after_s": 0, "channels": ["fax"]}]}, "channels"),
        ({"quiet_start": "25:00"}, "quiet_start"),
        ({"restricted": ["weather"]}, "weather"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        decode_policy(raw)


def test_texts_say_what_and_where_only() -> None:
    assert texts.sms("smoke", "olohuone", "fi", "https://r/v1/ack/x", late=False) == (
        "Palovaroitin: olohuone. Kuittaa: https://r/v1/ack/x"
    )
    assert texts.sms("smoke", "kitchen", "en", "L", late=True) == "Smoke alarm: kitchen (late). Acknowledge: L"
    assert texts.voice("smoke", "olohuone", "fi", late=False).endswith("Paina 1 kuitataksesi.")


def test_links_expire_and_cannot_be_forged() -> None:
    links = Links(b"k" * 32, "https://register.example")
    token = links.token("hub.alarm.1", "m_a", at=1000.0)
    with pytest.raises(Forbidden, match="expired"):
        links.read(token)  # signed at t=1000, long ago
    fresh = links.token("hub.alarm.1", "m_a", at=time.time())
    assert links.read(fresh) == ("hub.alarm.1", "m_a")
    other = Links(b"z" * 32, "https://register.example")
    with pytest.raises(Forbidden, match="not valid"):
        other.read(fresh)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.floats(min_value=1.6e9, max_value=2.2e9, allow_nan=False))
@example(1792868400.0)  # 22:00 on 24 Oct 2026: the clocks go back that night, so the quiet hours last 10 h
def test_quiet_hours_end_is_never_in_the_past_nor_later_than_their_length(t: float) -> None:
    p = Policy(quiet_start="22:00", quiet_end="07:00")
    out = p.after_quiet_hours(t)
    # 9 h of wall-clock time, 10 h on the night daylight saving time ends.
    assert t <= out <= t + 10 * 3600 + 1
    local = dt.datetime.fromtimestamp(out, HEL).time()
    assert out == t or local == dt.time(7, 0)
