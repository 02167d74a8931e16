"""Opening the SQLite file: pragmas, explicit transactions, integrity check, and quarantine of a corrupt file."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from gateway.errors import StoreCorruptError

log = logging.getLogger(__name__)

SIDE_FILES = ("-wal", "-shm")


def create_database(path: Path) -> None:
    """Creates an empty database with the settings that persist in the file (WAL, incremental auto-vacuum).

    ``auto_vacuum`` only takes effect before the first table exists, so it is set here, once, not on every connect.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("VACUUM")
    finally:
        conn.close()


def make_engine(path: Path, *, journal_size_limit: int, writer: bool = True) -> Engine:
    """An engine whose connections carry the store's pragmas.

    pysqlite's own implicit transactions are turned off (``isolation_level=None``) so that a commit is exactly where
    we say it is: *accepted* means that COMMIT has returned with ``synchronous=FULL``. The writer's transactions are
    ``BEGIN IMMEDIATE`` (it is the only writer, and must not fail late on a lock); readers use deferred ``BEGIN``
    and see a consistent WAL snapshot without blocking the writer.
    """
    engine = sa.create_engine(
        "sqlite+pysqlite:///",
        creator=lambda: sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30),
        poolclass=NullPool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute(f"PRAGMA journal_size_limit={int(journal_size_limit)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def check_integrity(path: Path) -> None:
    """Raises :class:`StoreCorruptError` unless ``PRAGMA integrity_check`` says ok (a missing file is fine)."""
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{path}", uri=True, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(f"cannot read the database: {exc}") from exc
    if rows != [("ok",)]:
        raise StoreCorruptError("integrity check failed: " + "; ".join(str(r[0]) for r in rows[:5]))


def quarantine(path: Path, reason: str) -> Path:
    """Moves a corrupt database and its side files aside (kept for a technician) so a fresh one can start."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", *SIDE_FILES):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    log.error("the store database failed its integrity check (%s); moved it aside and started a fresh one", reason)
    return target
