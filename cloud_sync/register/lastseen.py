"""A hub's coarse last-seen time, written off a smoke alarm's path.

The hub check writes ``hubs.last_seen`` at most once a minute per hub and process. In the alarm lane that write is
a statement and a commit (a WAL flush behind bulk ingest's) before the alarm's own transaction can start, and in
the alarm listener nearly every alarm pays it: a fleet's alarms come from many hubs, each seldom. So the alarm lane
hands the time to :class:`DeferredLastSeen`, which writes what it was given every :data:`FLUSH_S` seconds in one
transaction from a thread of its own. ``last_seen`` (the fleet view, the "hub silent" alarm, whose limits are in
minutes) is then at most that much later; a write that fails is logged and dropped, the next request of the hub
makes another.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, bindparam, func, update
from sqlalchemy.exc import SQLAlchemyError

from cloud_sync.register import db

log = logging.getLogger(__name__)

FLUSH_S = 2.0


class DeferredLastSeen:
    def __init__(self, engine: Engine, *, flush_s: float = FLUSH_S) -> None:
        self._engine, self._flush_s = engine, flush_s
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seen(self, hub_id: str, at: float) -> None:
        with self._lock:
            self._pending[hub_id] = max(at, self._pending.get(hub_id, 0.0))
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="hub-last-seen", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        hubs = db.hubs
        # Never back in time: another process (or the synchronous path) may have written a later one meanwhile.
        stmt = (
            update(hubs)
            .where(hubs.c.id == bindparam("hub"))
            .values(last_seen=func.greatest(func.coalesce(hubs.c.last_seen, 0.0), bindparam("at")))
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(stmt, [{"hub": h, "at": t} for h, t in sorted(batch.items())])
        except SQLAlchemyError as exc:
            log.warning("could not record %d hubs' last-seen time (%s); their next requests will", len(batch), exc)

    def close(self) -> None:
        """Writes what is pending and stops the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()
