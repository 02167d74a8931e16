"""Readings on PostgreSQL at fleet scale: a table range-partitioned by reading time, and ingest by binary ``COPY``.

**Partitions.** ``readings`` is partitioned by ``ts`` (the hub's reading time, epoch seconds) into weeks
(:data:`PARTITION_DAYS`), plus a ``DEFAULT`` partition for readings outside every week made so far (a hub whose clock
was months off); migration ``0003_readings_partitioned`` makes the table. Retention then drops whole weeks
(:func:`drop_expired`) instead of deleting rows one by one, and the weeks ahead are created by the same job
(:func:`ensure_partitions`) so that ingest never has to. ``reading_chunks`` (migration 0012, :mod:`.chunks`) is
partitioned the same way on ``ts_first``, and both are kept by the same two functions.

PostgreSQL requires every unique key of a partitioned table to contain the partition key, so the primary key is
``(hub_id, seq, ts)`` instead of ``(hub_id, seq)``. Deduplication still holds: a hub resends an item exactly as it
stored it in its outbox (the body, and so ``ts``, is written once and never changed), so a resent reading has the
same ``ts``, lands in the same partition and meets its first copy's key there. What the wider key would let through
is the same ``(hub, seq)`` sent with a *different* ``ts``, which no hub does; SQLite keeps ``(hub_id, seq)``.

**COPY.** A batch the register holds nothing of (the common case) is written by binary ``COPY`` straight into
``readings``; if the primary key refuses it (a resend after a lost ack, two sends racing) the transaction is rolled
back and the batch goes by ``COPY`` into a temporary staging table (one per database connection, made when the
connection opens, emptied at every commit), then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` in the same
transaction. Either way the ingest's ack comes only after that transaction committed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnClause, Connection, Engine, event, literal_column, text
from sqlalchemy.exc import DBAPIError

from cloud_sync.protocol import ReadingItem

log = logging.getLogger(__name__)

PARTITION_DAYS = 7
"""Width of a readings partition. A week: fine enough that retention frees space within a week of its due date,
coarse enough that six months are some 27 partitions."""
WEEKS_AHEAD = 4
"""Partitions kept ready beyond the current one, so a retention job that fails for weeks still leaves room."""
_WIDTH_S = PARTITION_DAYS * 86_400
_EPOCH_MONDAY = 4 * 86_400  # 1970-01-05, a Monday: partitions start on Mondays 00:00 UTC
PARENTS = {"readings": "ts", "reading_chunks": "ts_first"}
"""The tables partitioned by week, and the reading time each is partitioned on."""
LATE_S = {"readings": 0.0, "reading_chunks": 86_400.0}
"""How long after its week a partition may still hold a reading: a chunk starting in the week may reach a day past
it (``chunks.MAX_SPAN_S``)."""
PARTITION_OF: ColumnClause[str] = literal_column("tableoid::regclass::text")
"""The partition a row of a partitioned table is in, by name: ``RETURNING`` it from a delete to know what to scrub."""
STAGE = "readings_stage"
# The order of a row as :func:`reading_rows` builds it; every COPY and INSERT names these columns, so the table's own
# column order does not matter (tests/unit/test_partitions_columns.py checks they are exactly the table's columns).
COLUMNS = ("hub_id", "seq", "household_id", "device_id", "quantity", "value", "ts", "received_at", "channel")
_COPY_TYPES = ["text", "int8", "text", "text", "text", "float8", "float8", "float8", "text"]
LOCK_NOT_AVAILABLE = "55P03"
_COPY_SQL = f"COPY {STAGE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_DIRECT_SQL = f"COPY readings ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COLS = ", ".join(COLUMNS)
_MOVE_SQL = text(f"INSERT INTO readings ({_COLS}) SELECT {_COLS} FROM {STAGE} ON CONFLICT DO NOTHING")  # noqa: S608


def week_start(t: float) -> float:
    """Start (epoch seconds) of the partition holding reading time ``t``."""
    return _EPOCH_MONDAY + math.floor((t - _EPOCH_MONDAY) / _WIDTH_S) * _WIDTH_S


def partition_name(start: float, parent: str = "readings") -> str:
    return f"{parent}_p" + dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y%m%d")


def _start_of(name: str, parent: str) -> float | None:
    m = re.fullmatch(rf"{parent}_p(\d{{8}})", name)
    if m is None:
        return None
    return dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC).timestamp()


# --------------------------------------------------------------------------------------------------- schema


def is_partitioned(conn: Connection) -> bool:
    """Whether ``readings`` is the partitioned table (False on SQLite, and on a PostgreSQL database made before)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('readings')")).scalar())


def _exists(conn: Connection, table: str) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}).scalar())


def partitions(conn: Connection, parent: str = "readings") -> dict[str, float]:
    """The weekly partitions of ``parent``: name → start (the default partition is not listed)."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": parent},
    ).scalars()
    out = {}
    for name in names:
        start = _start_of(name, parent)
        if start is not None:
            out[name] = start
    return out


def ensure_partitions(conn: Connection, now: float, retention_days: int) -> list[str]:
    """Creates the missing weeks of each partitioned table (:data:`PARENTS`) from the retention cutoff to
    :data:`WEEKS_AHEAD` weeks ahead; returns their names.

    A week is made as a plain table, filled with any rows of its range the default partition caught, then attached:
    ``ATTACH`` checks the default partition holds none of the range (which is why they are moved first).
    """
    made = []
    for parent, key in PARENTS.items():
        if parent != "readings" and not _exists(conn, parent):
            continue
        have = set(partitions(conn, parent))
        start = week_start(now - retention_days * 86_400)
        last = week_start(now) + WEEKS_AHEAD * _WIDTH_S
        while start <= last:
            name = partition_name(start, parent)
            if name not in have:
                end = start + _WIDTH_S
                conn.execute(text(f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
                # ``name`` is made from a date by partition_name(), never from input.
                move = f"WITH moved AS (DELETE FROM {parent}_default WHERE {key} >= :lo AND {key} < :hi RETURNING *) INSERT INTO {name} SELECT * FROM moved"  # noqa: S608, E501
                conn.execute(text(move), {"lo": start, "hi": end})
                conn.execute(
                    text(f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({start!r}) TO ({end!r})")
                )
                made.append(name)
            start += _WIDTH_S
    if made:
        log.info("created partitions %s", ", ".join(made))
    return made


def drop_expired(engine: Engine, cutoff: float, *, lock_timeout_ms: int = 10_000) -> dict[str, int]:
    """Drops every weekly partition whose readings are all older than ``cutoff``; returns their names and how many
    readings each held.

    Detaching takes a brief exclusive lock on the parent table, so it waits at most ``lock_timeout_ms``: a week left
    over now is dropped by the next run (retention runs hourly). The week is counted and dropped only once detached,
    so ingest never waits for the count; a detached week a crash left behind is found and dropped by the next run.
    The dropped files are unlinked at the next checkpoint, which :mod:`.scrub` forces.
    """
    dropped: dict[str, int] = {}
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return {}
        for parent in PARENTS:
            if not _exists(conn, parent):
                continue
            late = LATE_S[parent]
            doomed = sorted(n for n, start in partitions(conn, parent).items() if start + _WIDTH_S + late <= cutoff)
            conn.rollback()
            for name in doomed:
                try:
                    with conn.begin():
                        conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
                        conn.execute(text(f"ALTER TABLE {parent} DETACH PARTITION {name}"))
                except DBAPIError as exc:
                    if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                        raise
                    log.warning("%s is busy; partition %s is dropped at the next retention run", parent, name)
            count = "count(*)" if parent == "readings" else "coalesce(sum(n), 0)"
            for name in _detached(conn, parent):
                with conn.begin():
                    dropped[name] = int(conn.execute(text(f"SELECT {count} FROM {name}")).scalar_one())  # noqa: S608
                    conn.execute(text(f"DROP TABLE {name}"))
    if dropped:
        log.info("dropped expired partitions %s", ", ".join(dropped))
    return dropped


def _detached(conn: Connection, parent: str = "readings") -> list[str]:
    """Weekly tables no longer attached to ``parent``: detached by :func:`drop_expired`, not yet dropped."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE :pattern"
            " AND c.relnamespace = current_schema()::regnamespace"
            " AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)"
        ),
        {"pattern": parent.replace("_", "\\_") + "\\_p%"},
    ).scalars()
    out = sorted(n for n in names if _start_of(n, parent) is not None)
    conn.rollback()
    return out


# --------------------------------------------------------------------------------------------------- ingest


def install_stage(engine: Engine) -> None:
    """Gives every new PostgreSQL connection of ``engine`` its staging table (temporary: private to the session and
    never written to the WAL; ``ON COMMIT DELETE ROWS``: empty again at every commit)."""

    def _stage(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (hub_id text, seq int8, household_id text, device_id text,"
                " quantity text, value float8, ts float8, received_at float8, channel text) ON COMMIT DELETE ROWS"
            )
        dbapi_conn.commit()

    event.listen(engine, "connect", _stage)


ReadingRow = tuple[str, int, str, str, str, float, float, float, str]
"""A row of ``readings`` in column order (:data:`COLUMNS`), as :func:`copy_readings` writes it."""


def reading_rows(items: list[ReadingItem], hub_id: str, household_id: str, now: float) -> list[ReadingRow]:
    """The rows of a readings batch's items, built straight from the decoded structs (no dict per row)."""
    return [
        (hub_id, it.seq, household_id, b.device_id, b.quantity, b.value, b.ts, now, b.channel)
        for it in items
        for b in (it.body,)
    ]


def copy_readings(conn: Connection, rows: Iterable[ReadingRow], *, direct: bool = False) -> int:
    """Stores reading rows by binary ``COPY``; returns how many were new. Once per transaction.

    ``direct``: ``COPY`` straight into ``readings`` and return them all as new. If any row is already held the
    ``COPY`` fails with a unique violation (:class:`psycopg.errors.UniqueViolation`) and the transaction must be
    rolled back and the batch sent again without ``direct``. Otherwise through the staging table and one ``INSERT …
    SELECT … ON CONFLICT DO NOTHING``; the conflict target is left implicit so that a ``readings`` made before
    partitioning (primary key ``(hub_id, seq)``) is served the same way."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    n = 0
    try:
        with cursor.copy(_DIRECT_SQL if direct else _COPY_SQL) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
                n += 1
    finally:
        cursor.close()
    if direct or not n:
        return n
    return int(conn.execute(_MOVE_SQL).rowcount)
