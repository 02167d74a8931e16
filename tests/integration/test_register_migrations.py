"""The register's schema under Alembic: made by migrations, in step with the metadata, adopting a database of the
release before migrations (commit 15f63d6, dumps made by scripts/make_legacy_register_dumps.py) with its data,
and upgrading once when several processes start at the same moment."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from cloud_sync.register import db, ingest, migrate
from cloud_sync.register.notify import schema as notify_schema
from tests.integration.test_register import INGEST_HEADERS, batch
from tests.support.register import start_register

DUMPS = Path(__file__).resolve().parents[1] / "vectors" / "register_15f63d6"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/register.db"
    return str(request.getfixturevalue("postgres_url"))


def _load_legacy(url: str) -> None:
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        with sqlite3.connect(path) as conn:
            conn.executescript((DUMPS / "sqlite.sql").read_text())
        return
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((DUMPS / "postgresql.sql").read_text().encode())
        # pg_dump empties search_path for its session only; this connection is gone after the block.


def test_fresh_database_is_made_by_migrations_and_matches_the_metadata(db_url: str) -> None:
    """A table or column added to db.metadata without a migration fails here (and the reverse too)."""
    engine = db.open_engine(db_url)
    try:
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as conn:
            assert migrate.schema_differences(conn, migrate.full_metadata()) == []
    finally:
        engine.dispose()


def test_a_table_without_a_migration_is_a_difference(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path}/r.db")
    extra = MetaData()
    for t in db.metadata.tables.values():
        t.to_metadata(extra)
    from sqlalchemy import Column, Integer, Table

    Table("not_migrated", extra, Column("id", Integer, primary_key=True))
    try:
        with engine.connect() as conn:
            diffs = migrate.schema_differences(conn, extra)
        assert [(d[0], d[1].name) for d in diffs] == [("add_table", "not_migrated")]
    finally:
        engine.dispose()


def test_the_baseline_is_the_previous_release_schema(db_url: str) -> None:
    """The frozen baseline matches what 15f63d6 made on this dialect (the adoption check relies on it)."""
    _load_legacy(db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert migrate.schema_differences(conn, migrate.BASELINE) == []
    finally:
        engine.dispose()


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            "households": list(conn.execute(select(db.households.c.id, db.households.c.name)).all()),
            "members": list(conn.execute(select(db.members.c.id, db.members.c.email)).all()),
            "hubs": list(conn.execute(select(db.hubs.c.id, db.hubs.c.cert_sha256, db.hubs.c.revoked)).all()),
            "readings": list(conn.execute(select(db.readings.c.seq, db.readings.c.value).order_by("seq")).all()),
            "events": list(conn.execute(select(db.events.c.lane, db.events.c.attrs)).all()),
            "commands": list(conn.execute(select(db.commands.c.id, db.commands.c.detail)).all()),
            "contacts": list(conn.execute(select(notify_schema.contacts.c.member_id)).all()),
            "alarms": list(conn.execute(select(notify_schema.alarms.c.id, notify_schema.alarms.c.place)).all()),
        }


def test_previous_release_database_is_adopted_upgraded_and_works(db_url: str, tmp_path: Path) -> None:
    _load_legacy(db_url)
    raw = create_engine(db_url)
    assert migrate.current(raw) is None
    try:
        # What the dump holds, read before the upgrade, must be there after it unchanged.
        before = _rows(raw)
    finally:
        raw.dispose()
    assert len(before["readings"]) == 50 and before["events"] == [("alarm", {"battery": 90})]
    assert before["alarms"] == [("hub_legacy/alarm/0", "keittiö")]

    register = start_register(tmp_path / "state", db_url)
    try:
        engine = register.reg.engine
        assert migrate.current(engine) == migrate.head()
        assert _rows(engine) == before
        with engine.connect() as conn:
            assert migrate.schema_differences(conn, db.metadata) == []
        # The app on it: the old household gets a new hub, which delivers readings; a resent batch deduplicates.
        hub = register.enroll("hh_legacy")
        assert sorted(h["id"] for h in register.reg.household("hh_legacy")["hubs"]) == sorted(
            ["hub_legacy", hub.hub_id]
        )
        s = hub.session()
        for _ in range(2):
            r = s.post(
                f"{register.url}/v1/ingest/readings", data=batch(hub, "readings", range(3)), headers=INGEST_HEADERS
            )
            assert r.status_code == 200, r.text
        assert [seq for seq, _ in ingest.items(register.reg, hub.hub_id, "readings")] == [0, 1, 2]
        assert len(ingest.items(register.reg, "hub_legacy", "readings")) == 50
    finally:
        register.close()


def test_a_database_that_is_not_the_baseline_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/register.db"
    _load_legacy(url)
    with sqlite3.connect(tmp_path / "register.db") as conn:
        conn.execute("ALTER TABLE hubs ADD COLUMN nickname TEXT")
    with pytest.raises(migrate.SchemaError, match="not the baseline"):
        db.open_engine(url)
    with sqlite3.connect(tmp_path / "register.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" not in tables  # nothing stamped, nothing changed


def test_a_newer_release_database_runs_if_it_only_added_and_is_refused_otherwise(db_url: str) -> None:
    """The rollback rule, checked: the previous release starts on a schema a newer one extended (a table and a
    nullable column more), and refuses one from which something it uses is gone."""
    engine = db.open_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
            conn.execute(text("CREATE TABLE future_things (id INTEGER PRIMARY KEY)"))
            conn.execute(text("ALTER TABLE hubs ADD COLUMN nickname VARCHAR(64)"))
        assert migrate.upgrade(engine) == "9999_from_the_future"  # ran on it, migrated nothing
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX readings_received"))
        with pytest.raises(migrate.SchemaError, match="lacks what this release uses"):
            migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_db_commands(db_url: str, tmp_path: Path) -> None:
    url = db_url

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "cloud_sync.register.cli", "db", *args, "--db", url, "--state", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert cli("current") == "none"
    history = cli("history")
    assert history.splitlines()[0].startswith(migrate.BASELINE_REVISION)
    assert cli("upgrade") == migrate.head()
    assert cli("downgrade", "base") == "none"  # every downgrade() runs, down to an empty database
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert cli("upgrade") == migrate.head()


def test_processes_starting_at_once_upgrade_once(db_url: str, tmp_path: Path) -> None:
    """Without the lock, three processes creating the same tables at once fail (table exists / duplicate key)."""
    cmd = [sys.executable, "-m", "cloud_sync.register.cli", "db", "upgrade", "--db", db_url, "--state", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {migrate.head()}
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert migrate.schema_differences(conn, db.metadata) == []
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()


def _reading_indexes(engine: Engine) -> dict[str, str]:
    """The readings table's indexes: name -> method ("btree", "brin"; SQLite's are all b-trees)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings' AND sql IS NOT NULL"
                )
            ).scalars()
            return {name: "btree" for name in names}
        rows = conn.execute(
            text(
                "SELECT c.relname, am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'readings'::regclass AND NOT i.indisprimary"
            )
        ).all()
        return {str(name): str(method) for name, method in rows}


def test_0008_drops_the_household_time_index_and_its_downgrade_puts_it_back(db_url: str) -> None:
    engine = db.open_engine(db_url, create=False)
    brin = "brin" if engine.dialect.name == "postgresql" else "btree"
    try:
        migrate.upgrade(engine, "0007_hub_exports")
        before = {"readings_household_ts": "btree", "readings_received": "btree", "readings_sensor_ts": "btree"}
        assert _reading_indexes(engine) == before
        row = {"hub_id": "h", "seq": 1, "household_id": "hh", "device_id": "d", "quantity": "t", "value": 1.5,
               "ts": 1.76e9, "received_at": 1.76e9, "channel": ""}  # fmt: skip
        with engine.begin() as conn:
            conn.execute(db.readings.insert(), [row])
        migrate.upgrade(engine)
        assert _reading_indexes(engine) == {"readings_received": brin, "readings_sensor_ts": "btree"}
        with engine.connect() as conn:
            assert migrate.schema_differences(conn, migrate.full_metadata()) == []
            assert [dict(r) for r in conn.execute(select(db.readings)).mappings()] == [row]
        migrate.downgrade(engine, "0007_hub_exports")
        assert _reading_indexes(engine) == before
    finally:
        engine.dispose()


def test_0011_clears_the_watched_marks_0010_wrote(db_url: str) -> None:
    """Live mode's marks move to memory: what 0010's release wrote to ``households.watched_until`` is cleared, and
    the column stays for that release to run on (the rollback rule)."""
    engine = db.open_engine(db_url, create=False)
    try:
        migrate.upgrade(engine, "0010_households_watched")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO households (id, name, created_at, watched_until) VALUES ('hh', 'K', 1, 2)"))
            conn.execute(text("INSERT INTO households (id, name, created_at) VALUES ('hh2', 'L', 1)"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name, watched_until FROM households ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("hh", "K", None), ("hh2", "L", None)]
            assert migrate.schema_differences(conn, migrate.full_metadata()) == []
        migrate.downgrade(engine, "0010_households_watched")
        assert "watched_until" in {c["name"] for c in inspect(engine).get_columns("households")}
    finally:
        engine.dispose()
