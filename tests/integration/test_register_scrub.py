"""The register's scrub: deleted rows leave the engine's files, and a busy table never stalls ingest for long."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

from cloud_sync.register import db
from cloud_sync.register.scrub import scrub

MARKER = "Scrubbattava-merkki-Y8"


def _fill_and_delete(engine: sa.Engine) -> None:
    rows = [
        {"household_id": "hh", "device_id": f"d{i}", "hub_id": "h", "kind": "sensor", "name": MARKER, "updated_at": 0.0}
        for i in range(200)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(db.households).values(id="hh", name="x", created_at=0.0))
        conn.execute(sa.insert(db.devices), rows)
    with engine.begin() as conn:
        conn.execute(sa.delete(db.devices))


def test_on_sqlite_deleted_rows_are_zeroed_and_the_wal_truncated(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path}/register.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == db.WAL_LIMIT_BYTES
        _fill_and_delete(engine)
        wal = tmp_path / "register.db-wal"
        assert MARKER.encode() in wal.read_bytes()  # what the issue found: the WAL keeps deleted rows
        done = scrub(engine, [db.devices])
        assert done["wal_truncated"] is True
        assert wal.stat().st_size == 0
        assert MARKER.encode() not in (tmp_path / "register.db").read_bytes()
    finally:
        engine.dispose()


def test_on_postgresql_a_busy_table_is_left_for_the_next_scrub_without_a_long_wait(postgres_url: str) -> None:
    engine = db.open_engine(postgres_url)
    try:
        _fill_and_delete(engine)
        dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as holder:
            holder.execute("LOCK TABLE devices IN ACCESS SHARE MODE")  # a long reader (an export, say)
            started = time.monotonic()
            done = scrub(engine, [db.devices, db.readings], lock_timeout_ms=300)
            waited = time.monotonic() - started
        assert done["busy"] == ["devices"] and done["vacuumed"] == ["readings"]
        assert waited < 20  # generous: the point is that it did not wait for the reader to finish
        again = scrub(engine, [db.devices])
        assert again["vacuumed"] == ["devices"] and "busy" not in again
        assert again["wal_recycled"] is True
    finally:
        engine.dispose()
