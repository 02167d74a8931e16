"""Counting what a request costs PostgreSQL on the wire: round trips and statements, from libpq's own trace.

:class:`RoundTrips` traces every connection an engine hands out (SQLAlchemy's ``checkout``) until it is handed
back (``checkin``) and parses libpq's record of the protocol messages: each time the client, having sent
something, reads the server's reply is one round trip (a pipeline of many statements is one); each ``Execute`` or
simple ``Query`` message is one statement. A pool's pre-ping runs before ``checkout`` and is not counted (the alarm
listener's pool does not ping). Used by ``bench/alarm_roundtrips.py`` and the test that keeps the alarm at two.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine


@dataclass
class Trace:
    round_trips: int = 0
    statements: int = 0
    sql: list[str] = field(default_factory=list)


def parse(text: str) -> Trace:
    """Round trips and statements in a libpq trace (``F``: client to server, ``B``: back)."""
    out = Trace()
    last = ""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        direction, message = parts[0], parts[2]
        if direction == "B" and last == "F":
            out.round_trips += 1
        if direction in ("F", "B"):
            last = direction
        if direction == "F" and message in ("Execute", "Query"):
            out.statements += 1
        if direction == "F" and message in ("Parse", "Query"):
            out.sql.append(parts[3].strip() if len(parts) > 3 else "")
    return out


class RoundTrips:
    """Round trips and statements on ``engine``'s connections between :meth:`reset` and :meth:`take`."""

    def __init__(self, engine: Engine) -> None:
        self.total = Trace()
        self._engine = engine
        self._open: dict[int, tuple[int, str]] = {}
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def close(self) -> None:
        """Stops counting (connections out now are not traced to the end)."""
        event.remove(self._engine, "checkout", self._checkout)
        event.remove(self._engine, "checkin", self._checkin)

    def _checkout(self, dbapi: Any, *_: Any) -> None:
        fd, path = tempfile.mkstemp(prefix="kotihub-pgtrace-")
        conn: psycopg.Connection[Any] = dbapi
        conn.pgconn.trace(fd)
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        self._open[id(dbapi)] = (fd, path)

    def _checkin(self, dbapi: Any, *_: Any) -> None:
        opened = self._open.pop(id(dbapi), None)
        if opened is None or dbapi is None:
            return
        fd, path = opened
        if not dbapi.closed:
            dbapi.pgconn.untrace()  # flushes libpq's record
        os.close(fd)
        with open(path) as f:
            got = parse(f.read())
        os.unlink(path)
        self.total.round_trips += got.round_trips
        self.total.statements += got.statements
        self.total.sql.extend(got.sql)

    def take(self) -> Trace:
        """What was counted since the last call (connections handed back since)."""
        out, self.total = self.total, Trace()
        return out
