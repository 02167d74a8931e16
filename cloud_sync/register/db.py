"""The register's tables (SQLAlchemy Core) and engine set-up for SQLite (default) and PostgreSQL.

Every row of personal data carries ``household_id`` so that a household's erasure and the scoping of every query
are one indexed predicate. Lane items are unique on ``(hub_id, [lane,] seq)``: that constraint *is* the
register's exactly-once guarantee, so it lives in the schema, not in code.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DefaultClause,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from cloud_sync.register import migrate

log = logging.getLogger(__name__)

metadata = MetaData()

households = Table(
    "households",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("created_at", Double, nullable=False),
    # When the household last erased its data: items recorded before it that a hub still delivers afterwards (its
    # outbox is emptied only when it carries out the erase command) are acknowledged but never stored again.
    Column("erased_before", Double, nullable=False, default=0.0, server_default="0"),
    # Retired (always NULL since migration 0011): live mode's marks were kept here by 0010's release and are now in
    # the register's memory only (cloud_sync.register.watching). Dropped once no supported release reads it.
    Column("watched_until", Double, nullable=True),
)

members = Table(
    "members",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("email", String(254), nullable=False, default=""),
    Column("phone", String(32), nullable=False, default=""),
    Column("created_at", Double, nullable=False),
)

member_keys = Table(
    "member_keys",
    metadata,
    Column("member_id", String(64), ForeignKey("members.id"), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("recipient", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("household_id", String(64), ForeignKey("households.id"), primary_key=True),
    Column("marketing", Boolean, nullable=False, default=False),
    Column("marketing_ban", Boolean, nullable=False, default=False),
    Column("updated_at", Double, nullable=False),
)

hubs = Table(
    "hubs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False, default=""),
    Column("cert_sha256", String(64), nullable=False),
    Column("enrolled_at", Double, nullable=False),
    Column("last_seen", Double, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)

pending_certs = Table(
    # A renewed certificate waits here until the hub first presents it; from then on only it is accepted and the
    # certificate it replaced is retired. Until then the old one still works, so a lost renewal reply costs nothing.
    "pending_certs",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("cert_sha256", String(64), nullable=False),
    Column("issued_at", Double, nullable=False),
)

enroll_tokens = Table(
    "enroll_tokens",
    metadata,
    # Only the SHA-256 of the token is kept; the token itself is shown once to the operator.
    Column("token_hash", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
    Column("hub_id", String(64), nullable=True),
)

devices = Table(
    "devices",
    metadata,
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(256), nullable=False, default=""),
    Column("model", String(256), nullable=False, default=""),
    Column("room", String(256), nullable=False, default=""),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("household_id", "device_id"),
)

readings = Table(
    "readings",
    metadata,
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("value", Double, nullable=False),
    Column("ts", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    # Last, where migration 0003 adds it: the PostgreSQL batch insert names the row type's columns in table order.
    Column("channel", String(16), nullable=False, server_default=""),
    PrimaryKeyConstraint("hub_id", "seq", name="readings_pk"),
    # Retention by arrival time. A BRIN on PostgreSQL: rows are appended in arrival order (migration 0008).
    Index("readings_received", "received_at", postgresql_using="brin", postgresql_with={"autosummarize": "on"}),
    # One sensor's readings in time order with their values: a chart and Home's latest value read this index only;
    # its prefix serves every household-wide read (erasure, counts, the sensor list). No (household, ts) index: one
    # index fewer to maintain per reading ingested (docs/scale.md "Indexes on readings").
    Index("readings_sensor_ts", "household_id", "device_id", "quantity", "ts", "value"),
)

events = Table(
    "events",
    metadata,
    Column("hub_id", String(64), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("attrs", JSON, nullable=False),
    Column("ts", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "lane", "seq", name="events_pk"),
    Index("events_household_ts", "household_id", "ts"),
    Index("events_received", "received_at"),
)

clip_records = Table(
    "clip_records",
    metadata,
    # The clips lane: index records, deduplicated like any lane item.
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("clip_id", String(128), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("started", Double, nullable=False),
    Column("duration_s", Double, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq", name="clip_records_pk"),
    Index("clip_records_household", "household_id", "started"),
    Index("clip_records_received", "received_at"),
)

clips = Table(
    "clips",
    metadata,
    # Resumable uploads of clip ciphertext; the bytes live in the blob store under ``blob_key``.
    Column("household_id", String(64), nullable=False),
    Column("clip_id", String(128), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("started", Double, nullable=False),
    Column("duration_s", Double, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("complete", Boolean, nullable=False, default=False),
    Column("created_at", Double, nullable=False),
    Column("completed_at", Double, nullable=True),
    PrimaryKeyConstraint("household_id", "clip_id"),
    Index("clips_created", "created_at"),
)

diagnostics = Table(
    "diagnostics",
    metadata,
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("ts", Double, nullable=False),
    Column("body", JSON, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq", name="diagnostics_pk"),
    Index("diagnostics_received", "received_at"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("hub_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("args", JSON, nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("issued_by", String(128), nullable=False),
    Column("delivered_at", Double, nullable=True),
    # "pending" until the hub reports "done" or "failed".
    Column("status", String(16), nullable=False, default="pending"),
    Column("detail", JSON, nullable=True),
    Column("completed_at", Double, nullable=True),
    Index("commands_pending", "hub_id", "status"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("household_id", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("household_id", String(64), nullable=True, index=True),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)

# The household's signed member list (cloud_sync/memberlist.py), append-only: a version is inserted once and
# never updated; (household, version) is unique so two members signing "the next version" at once cannot both win.
member_log = Table(
    "member_log",
    metadata,
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("prev", String(64), nullable=False),
    Column("signed", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("household_id", "version", name="member_log_pk"),
)

# The newest member-list version each hub reported holding, so a command carries only the versions it lacks.
hub_member_versions = Table(
    "hub_member_versions",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

# Changes an operator proposes (the operator cannot change the list): they take effect only if a member signs them.
member_requests = Table(
    "member_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("member_id", String(64), nullable=False),
    Column("recipient", String(128), nullable=False),
    Column("ed25519", String(64), nullable=False),
    Column("note", String(256), nullable=False, default=""),
    Column("requested_by", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
)

erasure_receipts = Table(
    "erasure_receipts",
    metadata,
    # The register's signed receipts: what each erasure destroyed here (counts, never content). Kept so that a
    # resent request gets the same receipt; they expire with the retention period like everything else.
    Column("household_id", String(64), nullable=False),
    Column("receipt_id", String(64), nullable=False),
    Column("at", Double, nullable=False, index=True),
    Column("body", JSON, nullable=False),
    PrimaryKeyConstraint("household_id", "receipt_id"),
)

hub_health = Table(
    "hub_health",
    metadata,
    # The latest heartbeat of each hub (cloud_sync.register.fleet); overwritten, never accumulated.
    Column("hub_id", String(64), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("received_at", Double, nullable=False),
    Column("version", String(64), nullable=False),
    Column("uptime_s", Double, nullable=False),
    Column("disk_free_bytes", BigInteger, nullable=False),
    Column("disk_total_bytes", BigInteger, nullable=False),
    Column("store_bytes", BigInteger, nullable=False),
    Column("written_bytes_per_day", BigInteger, nullable=True),
    Column("drivers_down", Integer, nullable=False),
    # Items the hub holds beyond what the register committed, per lane, as of this heartbeat.
    *(
        Column(f"lag_{lane}", BigInteger, nullable=False, default=0)
        for lane in ("alarm", "events", "readings", "clips", "diagnostics")
    ),
    # The alarm connection (migration 0009): the last ping's round trip, and whether the alarm path is failing.
    Column("alarm_ping_ms", Double, nullable=True),
    Column("alarm_failing", Boolean, nullable=True),
    Column("body", JSON, nullable=False),
)

HOUSEHOLD_TABLES: dict[Table, tuple[str, ...]] = {
    # Every table holding a household's data, with the columns whose age makes a row expire ("either clock": when
    # it happened at the hub, when it arrived here). Erasure deletes every row of the household from each of
    # them, retention every row older than the period by any listed column; a table listed without columns lives
    # as long as the household's membership does. A new per-household table joins erasure and retention with one
    # line here.
    readings: ("received_at", "ts"),
    events: ("received_at", "ts"),
    clip_records: ("received_at", "started"),
    clips: ("created_at", "started"),
    diagnostics: ("received_at", "ts"),
    devices: (),
    commands: (),
    member_keys: (),
    members: (),
    member_requests: (),
    enroll_tokens: (),
    consents: (),
    hub_health: ("received_at",),
}
"""Erasure and retention clear these (see ``cloud_sync.register.retention``); children before parents."""


def join_household_tables(tables: dict[Table, tuple[str, ...]]) -> None:
    """Adds another module's per-household tables (e.g. notifications) to :data:`HOUSEHOLD_TABLES`, ahead of the
    ones above, which they may reference."""
    merged = {**tables, **HOUSEHOLD_TABLES}
    HOUSEHOLD_TABLES.clear()
    HOUSEHOLD_TABLES.update(merged)


LANE_TABLES: dict[str, Table] = {
    "alarm": events,
    "events": events,
    "readings": readings,
    "clips": clip_records,
    "diagnostics": diagnostics,
}
"""Where each lane's items go; ``events`` holds both the alarm and the events lanes, told apart by ``lane``."""


WAL_LIMIT_BYTES = 4 * 1024 * 1024
"""The register's SQLite WAL is truncated to at most this after a checkpoint."""


def default_url(state_dir: str) -> str:
    return f"sqlite:///{state_dir}/register.db"


def open_engine(
    url: str, *, create: bool = True, pool_size: int = 8, max_overflow: int = 8, pre_ping: bool = True
) -> Engine:
    """An engine for ``url`` with the register's pragmas (SQLite: WAL, synchronous=FULL, foreign keys), and the
    schema created or upgraded by its migrations (:mod:`cloud_sync.register.migrate`). ``pool_size`` and
    ``max_overflow`` size the PostgreSQL connection pool of this process; ``pre_ping``: test each pooled
    connection with a round trip before handing it out."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = max_overflow
        kwargs["pool_pre_ping"] = pre_ping
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # Readings on PostgreSQL are ingested by COPY through a per-connection stage (the module builds on the
        # tables here, hence imported late).
        from cloud_sync.register import partitions

        partitions.install_stage(engine)
    if create:
        migrate.upgrade(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # FULL: an ack is sent after commit, and that commit must survive a power cut (reliability_security §1.2).
    # secure_delete zeroes deleted rows in the file whatever the build's default; journal_size_limit truncates
    # the WAL back to a bound after each checkpoint, so old page images do not linger in a large WAL file.
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        "busy_timeout=30000",
        "secure_delete=ON",
        f"journal_size_limit={WAL_LIMIT_BYTES}",
    ):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def insert_ignore(engine: Engine, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` on the table's primary key, in the engine's dialect."""
    keys = [c.name for c in table.primary_key.columns]
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)


def insert_many_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` skipping those whose primary key exists; returns how many were inserted. One statement
    per batch where the dialect allows it: the ingest hot path."""
    if not rows:
        return 0
    keys = [c.name for c in table.primary_key.columns]
    if conn.dialect.name != "postgresql":
        # sqlite3's executemany rowcount counts inserted rows, conflicts excluded.
        lite = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
        return int(conn.execute(lite.execution_options(preserve_rowcount=True), rows).rowcount)
    # One statement per batch: PostgreSQL expands a JSON array of the rows into records itself, which is several
    # times faster than executemany or array parameters (both format every value in Python).
    names = [c.name for c in table.c]
    row_type: ColumnElement[Any] = literal_column("NULL::" + conn.dialect.identifier_preparer.quote(table.name))
    source = (
        func.json_populate_recordset(row_type, cast(bindparam("rows", type_=Text), JSON))
        .table_valued(*names)
        .render_derived(name="batch")
    )
    # A key a row leaves out comes back NULL from the record: give it the column's server default, as a plain
    # INSERT would (e.g. a reading's channel).
    values = [
        func.coalesce(source.c[c.name], c.server_default.arg)
        if isinstance(c.server_default, DefaultClause)
        else source.c[c.name]
        for c in table.c
    ]
    # No conflict target: partitioned readings have ``ts`` in their key (docs/scale.md), so naming the metadata's
    # key would match no constraint there; the lane tables have no unique constraint but their primary key.
    stmt = postgresql.insert(table).from_select(names, select(*values)).on_conflict_do_nothing()
    payload = msgspec.json.encode(rows).decode()
    return int(conn.execute(stmt.execution_options(preserve_rowcount=True), {"rows": payload}).rowcount)


def upsert(engine: Engine, table: Table, update_columns: list[str]) -> Insert:
    """``INSERT … ON CONFLICT (pk) DO UPDATE SET`` the given columns from the proposed row."""
    keys = [c.name for c in table.primary_key.columns]
    if engine.dialect.name == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(index_elements=keys, set_={c: pg.excluded[c] for c in update_columns})
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(index_elements=keys, set_={c: lite.excluded[c] for c in update_columns})
