"""Readings on PostgreSQL partitioned by week on reading time (``ts``), primary key ``(hub_id, seq, ts)``.

PostgreSQL only; SQLite keeps its table. The old table's rows are copied into the partitioned one in this migration's
transaction (under the migration lock): on a large register this is the long step of the upgrade, about the time
of one ``COPY`` of the table. Weeks from six months back (the default retention) to four ahead are made; older rows
go to the default partition, where retention deletes them as before.

Rollback: the previous release cannot store readings on this schema (its ``ON CONFLICT (hub_id, seq)`` names a key
that no longer exists; hubs get 500s and keep their readings). Roll it back only after
``kotihub-register db downgrade 0002_command_notify``, which puts the unpartitioned table back, one row per
``(hub_id, seq)``.

Revision ID: 0003_readings_partitioned
Revises: 0002_command_notify
"""

from __future__ import annotations

import datetime as dt
import time

from alembic import op

revision = "0003_readings_partitioned"
down_revision: str | None = "0002_command_notify"
branch_labels = None
depends_on = None

_COLUMNS = (
    "hub_id varchar(64) NOT NULL, seq bigint NOT NULL, household_id varchar(64) NOT NULL,"
    " device_id varchar(128) NOT NULL, quantity varchar(32) NOT NULL, value double precision NOT NULL,"
    " ts double precision NOT NULL, received_at double precision NOT NULL"
)
_WEEK = 7 * 86_400
_MONDAY = 4 * 86_400  # 1970-01-05


def _rename_old() -> None:
    op.execute("ALTER TABLE readings RENAME TO readings_old")
    op.execute("ALTER TABLE readings_old RENAME CONSTRAINT readings_pk TO readings_old_pk")
    op.execute("ALTER INDEX readings_household_ts RENAME TO readings_old_household_ts")
    op.execute("ALTER INDEX readings_received RENAME TO readings_old_received")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _rename_old()
    op.execute(
        f"CREATE TABLE readings ({_COLUMNS}, CONSTRAINT readings_pk PRIMARY KEY (hub_id, seq, ts))"
        " PARTITION BY RANGE (ts)"
    )
    op.execute("CREATE INDEX readings_household_ts ON readings (household_id, ts)")
    op.execute("CREATE INDEX readings_received ON readings (received_at)")
    op.execute("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    now = time.time()
    start = _MONDAY + (now - 183 * 86_400 - _MONDAY) // _WEEK * _WEEK
    while start <= now + 5 * _WEEK:
        name = "readings_p" + dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y%m%d")
        op.execute(f"CREATE TABLE {name} PARTITION OF readings FOR VALUES FROM ({start!r}) TO ({start + _WEEK!r})")
        start += _WEEK
    op.execute("INSERT INTO readings SELECT * FROM readings_old")
    op.execute("DROP TABLE readings_old")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _rename_old()  # the partitioned table, its partitions dropped with it below
    op.execute(f"CREATE TABLE readings ({_COLUMNS}, CONSTRAINT readings_pk PRIMARY KEY (hub_id, seq))")
    op.execute("CREATE INDEX readings_household_ts ON readings (household_id, ts)")
    op.execute("CREATE INDEX readings_received ON readings (received_at)")
    op.execute("INSERT INTO readings SELECT * FROM readings_old ON CONFLICT DO NOTHING")
    op.execute("DROP TABLE readings_old")
    # Weeks a crash left detached (cloud_sync.register.partitions.drop_expired) hold only expired readings.
    op.execute(
        "DO $$ DECLARE t text; BEGIN FOR t IN SELECT relname FROM pg_class WHERE relkind = 'r'"
        " AND relname ~ '^readings_p[0-9]{8}$' AND relnamespace = current_schema()::regnamespace"
        " LOOP EXECUTE format('DROP TABLE %I', t); END LOOP; END $$"
    )
