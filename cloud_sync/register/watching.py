"""While a member has the household's app open, the household's hubs send readings within seconds (docs/app.md,
"Fresh readings while you look").

A hub lets readings linger (20 s by default) so that a home costs the register few requests; the price is that Home
and the charts may be that much behind. A page of the app that shows readings marks the household *watched* for
:data:`WATCH_S` (``households.watched_until``); the hubs learn it on their command long-poll, which answers at once
when the household's watched state is not what the hub last heard (the wake-up crosses processes as a queued
command's does, :mod:`.wakeups`), and carries the seconds left in the :data:`~cloud_sync.protocol.LIVE_HEADER`
header. While watched, a hub sends readings every ``uplink.readings_live_linger_s`` (2 s).

What it reveals: the hub learns when someone in its household has the app open, which the household's own devices
may know; the register's row holds only the end of the last visit's window, overwritten by the next and cleared by
an erasure. Nothing is written more than once a minute per household (:data:`REFRESH_S`), whatever a member's
browser does.
"""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import select, text, update

from cloud_sync.register import db
from cloud_sync.register.registry import Registry
from cloud_sync.register.wakeups import CHANNEL

WATCH_S: Final = 300.0
"""How long one page view keeps the household watched."""
REFRESH_S: Final = 60.0
"""A view within this long of the last mark writes nothing: the window is extended at most once a minute."""


def watch(registry: Registry, household_id: str, *, now: float | None = None) -> list[str]:
    """Marks the household watched for :data:`WATCH_S` from ``now``. Returns the hubs to wake in this process (the
    household was not watched: its hubs' long-polls should answer now); other processes are woken by PostgreSQL's
    ``NOTIFY``, sent at commit. Nothing to wake (an empty list) when it was watched already."""
    now = time.time() if now is None else now
    h = db.households.c
    with registry.engine.begin() as conn:
        until = conn.execute(select(h.watched_until).where(h.id == household_id)).scalar_one_or_none()
        if until is not None and until - now > WATCH_S - REFRESH_S:
            return []
        conn.execute(update(db.households).where(h.id == household_id).values(watched_until=now + WATCH_S))
        if until is not None and until > now:
            return []  # watched already: the hubs hear the new end at their next long-poll answer
        hubs = list(
            conn.execute(
                select(db.hubs.c.id).where(db.hubs.c.household_id == household_id, db.hubs.c.revoked.is_(False))
            ).scalars()
        )
        if conn.dialect.name == "postgresql":
            for hub_id in hubs:
                conn.execute(text("SELECT pg_notify(:channel, :hub)"), {"channel": CHANNEL, "hub": hub_id})
    return hubs


def seconds_left(registry: Registry, household_id: str, *, now: float | None = None) -> float:
    """How long the household stays watched (0: it is not)."""
    now = time.time() if now is None else now
    h = db.households.c
    with registry.engine.connect() as conn:
        until = conn.execute(select(h.watched_until).where(h.id == household_id)).scalar_one_or_none()
    return max(0.0, (until or 0.0) - now)
