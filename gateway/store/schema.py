"""The store's tables, its SQLite settings and its forward-only migrations.

Nothing personal is stored in the clear: values, names, device ids and clip metadata live inside AEAD records
(``blob`` columns); only what indexing needs — lane, sequence, epoch, a coarse time — is plain. Readings are stored
as one compressed, encrypted *frame* per group commit, which is what keeps bytes written per reading low on SD cards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.errors import SchemaTooNewError

log = logging.getLogger(__name__)

COARSE_S: Final = 3600.0
"""Times in the clear (``items.ts``, frames' ``ts_min``/``ts_max``) are kept to the hour; the exact time is inside
the encrypted record."""
SEEN_S: Final = 600.0
"""Devices' ``last_seen`` in the clear is kept to ten minutes (offline detection across a restart needs no more);
``first_seen`` to the day."""


def coarse(ts: float, step: float = COARSE_S) -> float:
    return float(ts // step * step)


metadata = sa.MetaData()

epoch_keys = sa.Table(
    "epoch_keys",
    metadata,
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
)

lanes = sa.Table(
    "lanes",
    metadata,
    sa.Column("lane", sa.Text, primary_key=True),
    sa.Column("next_seq", sa.Integer, nullable=False),
    sa.Column("synced_seq", sa.Integer, nullable=False),
    sa.Column("last_sync", sa.Float),
)

reading_frames = sa.Table(
    "reading_frames",
    metadata,
    sa.Column("first_seq", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, index=True),
    sa.Column("ts_min", sa.Float, nullable=False),
    sa.Column("ts_max", sa.Float, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)

# Events, alarms, clip index records and diagnostics: one encrypted record per outbox item.
items = sa.Table(
    "items",
    metadata,
    sa.Column("lane", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("epoch", sa.Integer, nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    # A non-personal reference, e.g. the random clip id naming the spool file.
    sa.Column("ref", sa.Text),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    # Keyed hash of the device id, so the id (often a MAC) is not in the clear.
    sa.Column("tag", sa.Text, primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("epoch", sa.Integer, nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("lane", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# What drivers must remember across restarts (Zigbee2MQTT names, discovery configs, BLE replay counters, adopted
# devices): one encrypted record per (namespace, key); the key is in the record, the row holds only its keyed hash.
driver_state = sa.Table(
    "driver_state",
    metadata,
    sa.Column("ns", sa.Text, primary_key=True),
    sa.Column("key_tag", sa.Text, primary_key=True),
    # The device tag (as in `devices`) when the record is about one device, so erasing that device finds it.
    sa.Column("device_tag", sa.Text, index=True),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2_driver_state(conn: Connection) -> None:
    # checkfirst: _v1 creates every table of `metadata`, so a database made by this version already has it.
    driver_state.create(conn, checkfirst=True)
    for index in driver_state.indexes:
        index.create(conn, checkfirst=True)


# Append only: migration N (1-based) brings user_version from N-1 to N. Never edit a released one.
# Each is additive (new tables, nullable columns, indexes), and a release adds at most one: so the release before it
# still reads and writes the store, and an update can always be rolled back (docs/updates.md, "Store migrations";
# tests/unit/test_store_rollback.py checks both).
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2_driver_state]
SCHEMA_VERSION = len(MIGRATIONS)
COMPATIBLE_AHEAD = 1
"""How many schema versions newer than this code a store may be and still be used as it is: the one a newer
release added before it was rolled back to this one."""


def migrate(conn: Connection) -> int:
    """Brings the schema to :data:`SCHEMA_VERSION` in one transaction; refuses a database newer than the code.

    The caller holds an open transaction: either every pending migration applies, or none does and the old database
    is left as it was.
    """
    current = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
    if SCHEMA_VERSION < current <= SCHEMA_VERSION + COMPATIBLE_AHEAD:
        # A rolled-back update: the newer release's migration only added what this code does not use.
        log.warning("store schema %d is newer than this release's %d; using it as it is", current, SCHEMA_VERSION)
        return int(current)
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database has schema version {current} but this kotihub knows only up to {SCHEMA_VERSION}; "
            "refusing to touch it (was kotihub downgraded?)"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1](conn)
        log.info("store schema migrated to version %d", version)
    if current != SCHEMA_VERSION:
        # PRAGMA takes no bound parameters; the value is our own integer.
        conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return int(current)
