"""Live mode's marks in a register process's memory (cloud_sync/register/watching.py): a page view marks the
household at most once a minute, a window lasts WATCH_S and never longer (not even when the wall clock steps back),
and a mark heard from another process wakes the household's long-polls only when it starts a window."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine

from cloud_sync.register import watching
from cloud_sync.register.watching import REFRESH_S, WATCH_S, Watching


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def w(clock: Clock) -> Watching:
    return Watching(create_engine("sqlite://"), clock=clock)


def test_a_page_view_marks_at_most_once_a_minute(w: Watching, clock: Clock) -> None:
    assert not w.announces  # SQLite: one process, nothing to tell
    assert w.mark("hh_1") == (clock.now + WATCH_S, watching.wake_key("hh_1"))
    assert w.seconds_left("hh_1") == WATCH_S and w.seconds_left("hh_2") == 0
    clock.now += REFRESH_S - 1
    assert w.mark("hh_1") is None
    clock.now += 1
    # Extended, and announced, but the hubs are live already: nothing to wake.
    assert w.mark("hh_1") == (clock.now + WATCH_S, None)
    clock.now += WATCH_S
    assert w.seconds_left("hh_1") == 0
    assert w.mark("hh_1") == (clock.now + WATCH_S, watching.wake_key("hh_1"))


def test_a_wall_clock_stepping_back_neither_stops_marks_nor_lengthens_the_window(w: Watching, clock: Clock) -> None:
    assert w.mark("hh_1") is not None
    clock.now -= 3600
    assert w.mark("hh_1") is not None, "a mark an hour 'ahead' does not silence the next hour of page views"
    assert w.seconds_left("hh_1") == WATCH_S


def test_a_mark_heard_from_another_process(w: Watching, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    assert w.heard(f"hh_1 {clock.now + 100!r}") == watching.wake_key("hh_1")
    assert w.seconds_left("hh_1") == 100
    assert w.heard(f"hh_1 {clock.now + 200!r}") is None  # watched already: extended, nobody to wake
    assert w.seconds_left("hh_1") == 200
    assert w.heard(f"hh_1 {clock.now + 50!r}") is None and w.seconds_left("hh_1") == 200  # never shortened
    assert w.heard(f"hh_2 {clock.now - 5!r}") is None and w.seconds_left("hh_2") == 0  # over already
    assert w.heard(f"hh_3 {clock.now + 1e9!r}") == watching.wake_key("hh_3")
    assert w.seconds_left("hh_3") == WATCH_S  # no window runs longer than one mark's
    with caplog.at_level(logging.WARNING, logger="cloud_sync.register.watching"):
        for bad in ("", "hh_4", "hh_4 soon", "hh_4 nan", "hh_4 inf", " 12"):
            assert w.heard(bad) is None
    assert len(caplog.records) == 6 and w.seconds_left("hh_4") == 0
