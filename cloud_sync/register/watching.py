"""While a member has the household's app open, the household's hubs send readings within seconds (docs/app.md,
"Fresh readings while you look").

A hub lets readings linger (20 s by default) so that a home costs the register few requests; the price is that Home
and the charts may be that much behind. A page of the app that shows readings marks the household *watched* for
:data:`WATCH_S`; the hubs learn it on their command long-poll, which answers at once when the household's watched
state is not what the hub last heard, and carries the seconds left in the :data:`~cloud_sync.protocol.LIVE_HEADER`
header. While watched, a hub sends readings every ``uplink.readings_live_linger_s`` (2 s).

The mark lives in the memory of the register's processes, never in a table: when a member had the app open is
behaviour, and a table row would leave its history in PostgreSQL's dead row versions, WAL and backups. Other
processes (workers, other hosts on the same database) hear a mark by ``NOTIFY`` on :data:`CHANNEL` (the payload is
the household id and the window's end, carried through PostgreSQL's in-memory notification queue, not logged), on
the LISTEN connection that also carries command wake-ups (:mod:`.wakeups`). A process that was not listening (it
started later, its LISTEN was down) hears the next mark: a page that stays open marks at least every
:data:`REFRESH_S`. A register restart forgets every mark, and an erasure leaves one to lapse within :data:`WATCH_S`:
the hubs go back to lingering until the next page view.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

WATCH_S: Final = 300.0
"""How long one page view keeps the household watched."""
REFRESH_S: Final = 60.0
"""A view within this long of the last mark announces nothing: the window is extended at most once a minute."""
CHANNEL: Final = "kotihub_watched"
"""The PostgreSQL notification channel of marks (payload ``<household id> <window end, epoch seconds>``)."""


def wake_key(household_id: str) -> str:
    """The :class:`~cloud_sync.register.wakeups.Wakeups` key of a household's hubs' long-polls (hub ids, the
    other keys, never contain a space)."""
    return f"household {household_id}"


class Watching:
    """Which households have the app open, in this process: :meth:`mark` on a page view, :meth:`heard` for a mark
    from another process, :meth:`seconds_left` for a long-poll's answer. Used from the event loop's thread."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._until: dict[str, float] = {}
        self._marked: dict[str, float] = {}
        """When this process last announced each household (at most once every REFRESH_S)."""
        self._next_prune = 0.0

    @property
    def announces(self) -> bool:
        """Whether marks cross processes (PostgreSQL); on SQLite the register is one process."""
        return self._engine.dialect.name == "postgresql"

    def seconds_left(self, household_id: str) -> float:
        """How long the household stays watched (0: it is not); never more than :data:`WATCH_S`, even after the
        wall clock stepped back."""
        return min(WATCH_S, max(0.0, self._until.get(household_id, 0.0) - self._clock()))

    def mark(self, household_id: str) -> tuple[float, str | None] | None:
        """A page showing the household's readings: ``(window end to announce, key to wake here or None)``, or None
        when this process announced less than :data:`REFRESH_S` ago (nothing to do)."""
        now = self._clock()
        if 0 <= now - self._marked.get(household_id, -REFRESH_S) < REFRESH_S:
            return None  # (a mark "in the future" is a wall clock that stepped back: announced again)
        self._marked[household_id] = now
        until = now + WATCH_S
        return until, self._extend(household_id, until, now)

    def heard(self, payload: str) -> str | None:
        """A mark announced on :data:`CHANNEL` (by any process, this one too): the key to wake when the household
        was not watched here, else None. A malformed payload is logged and ignored."""
        household_id, _, end = payload.rpartition(" ")
        try:
            until = float(end)
        except ValueError:
            until = float("nan")
        if not household_id or not math.isfinite(until):
            log.warning("ignored a malformed watched mark on %s", CHANNEL)
            return None
        return self._extend(household_id, min(until, self._clock() + WATCH_S), self._clock())

    def announce(self, household_id: str, until: float) -> None:
        """Tell the other processes (PostgreSQL ``NOTIFY``; only where :attr:`announces`). Blocking: run it in a
        thread."""
        with self._engine.begin() as conn:
            payload = f"{household_id} {until!r}"
            conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    def _extend(self, household_id: str, until: float, now: float) -> str | None:
        self._prune(now)
        was = self._until.get(household_id, 0.0)
        if until > was:
            self._until[household_id] = until
        return wake_key(household_id) if was <= now < until else None

    def _prune(self, now: float) -> None:
        # Memory stays bounded by the households watched in the last window, without a task of its own.
        if now < self._next_prune:
            return
        self._next_prune = now + REFRESH_S
        self._until = {h: u for h, u in self._until.items() if u > now}
        self._marked = {h: t for h, t in self._marked.items() if 0 <= now - t < REFRESH_S}
