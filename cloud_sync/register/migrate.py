"""The register's schema, made and upgraded by Alembic (``cloud_sync/register/migrations``), never by ``create_all``.

:func:`upgrade` runs at every start-up and from ``kotihub-register db upgrade``. It holds a lock while it works, so
that several register processes starting at once upgrade once and the rest find the schema current: on PostgreSQL
a transaction-level advisory lock (the stamp and every migration in that one transaction, so a failed upgrade
leaves the schema as it was), on SQLite an exclusive ``flock`` on a file beside the database.

A database the release before migrations made (its tables, no ``alembic_version``) is adopted: its schema is
compared with the frozen baseline and, only if they match, stamped as the baseline and upgraded like any other.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from cloud_sync.register.migrations.baseline_schema import BASELINE

log = logging.getLogger(__name__)
# Alembic logs its dialect at INFO on every connection it configures, i.e. at every CLI command; the one line that
# matters (which revisions ran) is ours, below.
logging.getLogger("alembic").setLevel(logging.WARNING)

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001_baseline"
ADVISORY_LOCK_KEY = 0x6B6F_7469_6875_6201
"""PostgreSQL advisory lock id of the register's migrations (any constant the database's other users do not use)."""
VERSION_TABLE = "alembic_version"
_PARTITION = re.compile(r"(readings|reading_chunks)_(p\d{8}|default)")
_POSTGRES_ONLY = frozenset({"reading_chunks", "hub_chunk_marks"})
"""Tables of ``chunks.metadata`` (PostgreSQL only, compared on their own, not with ``db.metadata``)."""


TABLE_MODULES = (
    "cloud_sync.register.db",
    "cloud_sync.register.notify.schema",
    "cloud_sync.register.restriction_table",
    "cloud_sync.register.webapp.schema",
    "cloud_sync.register.rollout",
    "cloud_sync.register.config_push",
    "cloud_sync.register.hubexports",
)
"""Every module that defines register tables on ``db.metadata``: what the migrations must make."""


def full_metadata() -> Any:
    """The register's whole metadata, every table module loaded (whatever the caller happened to import)."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    from cloud_sync.register import db  # db imports this module

    return db.metadata


class SchemaError(Exception):
    """The database's schema is not one this release can run on or upgrade (permanent: an operator must look)."""


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str


def alembic_config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def history() -> list[Revision]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    revs = [Revision(str(s.revision), _one(s.down_revision), (s.doc or "").strip()) for s in script.walk_revisions()]
    return revs[::-1]


def _one(down: Any) -> str | None:
    if down is None or isinstance(down, str):
        return down
    return ",".join(down)


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database without one (empty, or from the previous release)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Create or upgrade the schema to ``revision`` under the migration lock; returns the revision it is at."""
    with _locked(engine) as conn:
        known = {r.revision for r in history()}
        at = MigrationContext.configure(conn).get_current_revision()
        if at is None and _is_legacy(conn):
            adopt(conn)
        elif at is not None and at not in known:
            # A newer release migrated this database (a rolling upgrade, or a rollback of the code). The rollback
            # rule (docs/register.md) says its migrations only added things; run on it if that holds, i.e. if
            # everything this release uses is there as this release knows it.
            _check_newer(conn, at)
            return at
        command.upgrade(alembic_config(conn), revision)
        now = MigrationContext.configure(conn).get_current_revision()
    _forget_chunks(engine)  # 0012 makes reading_chunks
    if now != at:
        log.info("register schema upgraded from %s to %s", at or "nothing", now)
    return str(now)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Undo migrations down to ``revision`` (``base``: all of them); returns the revision it is at."""
    with _locked(engine) as conn:
        command.downgrade(alembic_config(conn), revision)
        at = MigrationContext.configure(conn).get_current_revision()
    _forget_chunks(engine)
    return at


def _check_newer(conn: Connection, at: str) -> None:
    # What the database has beyond this release's metadata shows as "remove_*"; anything else is missing or changed.
    lacking = [
        d
        for d in schema_differences(conn, full_metadata())
        if not (isinstance(d, tuple) and d[0].startswith("remove_"))
    ]
    if lacking:
        shown = "; ".join(repr(d) for d in lacking[:5])
        raise SchemaError(
            f"the database is at revision {at!r}, which this release does not know (a newer release upgraded it), "
            f"and lacks what this release uses ({shown}); run the newer release, or `kotihub-register db "
            "downgrade` with it first"
        )
    log.warning("the database is at a newer revision, %s; it has everything this release uses, so it runs on it", at)


def _is_legacy(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return VERSION_TABLE not in tables and bool(tables & set(BASELINE.tables))


def schema_differences(conn: Connection, metadata: Any) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``metadata`` (empty: they match)."""
    pg_only = {t.name for t in metadata.sorted_tables} <= _POSTGRES_ONLY

    def include(name: str | None, type_: str, _parent: Any) -> bool:
        if type_ != "table" or name is None:
            return True
        # Readings partitions (cloud_sync.register.partitions) come and go with time; the tables are their parents.
        return not _PARTITION.fullmatch(name) and (name in _POSTGRES_ONLY) == pg_only

    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include})
    return [d for d in compare_metadata(ctx, metadata) if not _is_version_table(d)]


def _forget_chunks(engine: Engine) -> None:
    from cloud_sync.register import chunks  # chunks imports db, which imports this module

    chunks.forget(engine)


def _is_version_table(diff: Any) -> bool:
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == VERSION_TABLE


def adopt(conn: Connection) -> None:
    """Stamp a previous release's database as the baseline, after checking that its schema is the baseline's."""
    diffs = schema_differences(conn, BASELINE)
    if diffs:
        shown = "; ".join(repr(d) for d in diffs[:5])
        raise SchemaError(
            f"the database has the register's tables but no migration history, and its schema is not the "
            f"baseline ({len(diffs)} difference(s): {shown}); it was not made by a kotihub release"
        )
    command.stamp(alembic_config(conn), BASELINE_REVISION)
    log.info("adopted a database of the release before migrations as revision %s", BASELINE_REVISION)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the register's migration lock."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            yield conn
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.begin() as conn:  # a private in-memory database: nobody to race with
            yield conn
        return
    with open(f"{database}.migrate.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with engine.begin() as conn:
            yield conn
