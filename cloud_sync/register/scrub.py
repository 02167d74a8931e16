"""After rows are deleted, make their bytes go from the database engine's files too (docs/register.md, "How long a
deleted byte survives").

A ``DELETE`` only marks rows dead: on SQLite the old page images stay in the WAL until a checkpoint, and on
PostgreSQL dead tuples stay in the table's pages until they are rewritten, and the WAL segments that logged them
stay until they are removed. :func:`scrub` is run after every erasure and every retention run:

* **SQLite** — ``secure_delete`` (set on every connection, see :mod:`.db`) has zeroed the deleted cells in the
  database file; a ``wal_checkpoint(TRUNCATE)`` writes the WAL back and truncates it to zero bytes.
* **PostgreSQL** — ``VACUUM (FULL)`` of each affected table (of a partitioned table, each partition rows were
  deleted from, see :mod:`.partitions`) rewrites it and its indexes and TOAST into new files
  holding only live rows (the old files are truncated at once and unlinked at the next checkpoint); then
  ``CHECKPOINT``, ``pg_switch_wal()`` and ``CHECKPOINT`` again close the WAL segment that logged the deleted rows
  and remove it — removed, not recycled, when the server runs with ``wal_recycle = off`` as documented.
  ``CHECKPOINT`` needs the ``pg_checkpoint`` role and ``pg_switch_wal`` an ``EXECUTE`` grant; without them the
  register logs a warning and says so in the result, and the byte survives until the server's own checkpoint
  (``checkpoint_timeout``) and segment switch (``archive_timeout``) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 10_000
LOCK_NOT_AVAILABLE = "55P03"
UNDEFINED_TABLE = "42P01"


def scrub(
    engine: Engine,
    tables: Iterable[Table],
    *,
    partitions: Iterable[str] | None = None,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> dict[str, object]:
    """Removes what deleted rows of ``tables`` left behind in the engine's files; returns what it did.

    ``partitions``: for a partitioned table among ``tables`` (PostgreSQL readings), only these of its partitions are
    rewritten, the ones rows were deleted from; None rewrites all of them."""
    if engine.dialect.name == "sqlite":
        return _scrub_sqlite(engine)
    if engine.dialect.name == "postgresql":
        return _scrub_postgresql(engine, tables, None if partitions is None else set(partitions), lock_timeout_ms)
    raise ValueError(f"no scrub procedure for {engine.dialect.name}")


def _scrub_sqlite(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        busy, log_pages, checkpointed = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        conn.commit()
    if busy:
        # A reader holds an old snapshot: the WAL could not be reset now. The next scrub (every erasure and
        # retention run) or SQLite's own checkpoint finishes it; journal_size_limit still bounds the file.
        log.warning("the WAL checkpoint was blocked by a reader; it is retried at the next scrub")
    return {"engine": "sqlite", "wal_truncated": not busy, "wal_pages": int(log_pages), "moved": int(checkpointed)}


def _targets(conn: Connection, tables: Iterable[Table], partitions: set[str] | None) -> list[str]:
    """What to ``VACUUM (FULL)``: each table, or for a partitioned one the given partitions of it."""
    out: list[str] = []
    for table in dict.fromkeys(tables):
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table.name}
        ).scalar()
        if kind != "p" or partitions is None:
            out.append(str(table.name))
            continue
        children = conn.execute(
            text("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = to_regclass(:t)"),
            {"t": table.name},
        ).scalars()
        out.extend(sorted(set(children) & partitions))
    return out


def _scrub_postgresql(
    engine: Engine, tables: Iterable[Table], partitions: set[str] | None, lock_timeout_ms: int
) -> dict[str, object]:
    vacuumed: list[str] = []
    done: dict[str, object] = {"engine": "postgresql"}
    # VACUUM and CHECKPOINT cannot run inside a transaction block.
    skipped: list[str] = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        quote = conn.dialect.identifier_preparer.quote
        # VACUUM FULL needs the table to itself, and ingest queues behind it while it waits: never wait long. A
        # table skipped now is rewritten by the next scrub (the hourly retention run scrubs every table).
        conn.execute(text(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'"))
        for name in _targets(conn, tables, partitions):
            try:
                conn.execute(text(f"VACUUM (FULL) {quote(name)}"))
                vacuumed.append(name)
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if state == UNDEFINED_TABLE:  # a partition retention dropped meanwhile: its files went with it
                    continue
                if state != LOCK_NOT_AVAILABLE:
                    raise
                log.warning("%s is busy; it is rewritten at the next scrub", name)
                skipped.append(name)
        try:
            conn.execute(text("CHECKPOINT"))
            conn.execute(text("SELECT pg_switch_wal()"))
            conn.execute(text("CHECKPOINT"))
            done["wal_recycled"] = True
        except DBAPIError as exc:
            log.warning("could not force a checkpoint and WAL switch (grant pg_checkpoint and pg_switch_wal): %s", exc)
            done["wal_recycled"] = False
    done["vacuumed"] = vacuumed
    if skipped:
        done["busy"] = skipped
    return done
