"""The store-migration rule that keeps updates reversible (docs/updates.md, "Store migrations"): every migration is
additive, and a store one schema version ahead (a newer release's, before a rollback to this one) is used as it is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.errors import SchemaTooNewError
from gateway.model import Quantity, Reading
from gateway.store import schema
from tests.support.stores import open_store


def _shape(conn: sa.Connection) -> dict[str, dict[str, str]]:
    insp = sa.inspect(conn)
    return {t: {c["name"]: str(c["type"]) for c in insp.get_columns(t)} for t in insp.get_table_names()}


def test_every_migration_keeps_what_the_previous_schema_had() -> None:
    """Applied one by one, no migration drops or retypes a table or column the schema before it had, so the
    release before it can still use the store."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        before: dict[str, dict[str, str]] = {}
        for n, migration in enumerate(schema.MIGRATIONS, start=1):
            migration(conn)
            after = _shape(conn)
            for table, columns in before.items():
                assert table in after, f"migration {n} drops table {table}"
                for column, kind in columns.items():
                    assert after[table].get(column) == kind, f"migration {n} drops or retypes {table}.{column}"
            before = after


async def test_a_store_from_the_next_release_is_used_after_a_rollback(tmp_path: Path) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path, key) as store:
        await store.add_readings([Reading("mqtt:a", Quantity.TEMPERATURE, 20.5, 1_700_000_000.0)])
    # The next release's migration: one more table, user_version one up.
    db = tmp_path / "kotihub.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE next_release_things (id INTEGER PRIMARY KEY, blob BLOB)")
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
        conn.commit()
    # Rolled back to this release: it opens the store, reads what was there, and writes on.
    async with open_store(tmp_path, key) as store:
        await store.add_readings([Reading("mqtt:a", Quantity.TEMPERATURE, 21.0, 1_700_000_060.0)])
        values = await asyncio.to_thread(lambda: [r.value for _, r in store.iter_readings()])
    assert values == [20.5, 21.0]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        # Untouched: the newer release finds its schema as it left it when it comes back.
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION + 1,)
        assert conn.execute("SELECT count(*) FROM next_release_things").fetchone() == (0,)
    # Two versions ahead is beyond the rule: refused.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 2}")
        conn.commit()
    with pytest.raises(SchemaTooNewError):
        open_store(tmp_path, key)
