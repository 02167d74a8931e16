"""Readings in packed chunks (PostgreSQL only; cloud_sync/register/chunks.py): ``reading_chunks``, partitioned by
week on ``ts_first`` like ``readings``, and ``hub_chunk_marks``, each hub's highest seq stored in a chunk.

Indexes per chunk, not per reading: the primary key ``(hub_id, seq_first, ts_first)``; ``(hub_id, seq_last)``, by
which a batch finds what a hub's chunks hold of its seqs and the export and the chart cache read a hub's readings
after a seq; ``(household_id, device_id, quantity, ts_first)`` for charts and Home; a BRIN on ``received_at`` for
retention by arrival time.

Rollback: this release writes no chunks unless ``--readings-chunks`` is given (the next turns it on), so the release
before runs on this schema as long as it was not; a register that wrote chunks must not be rolled back to a release
before this one, which would neither show nor erase them. The downgrade turns every chunk back into rows of
``readings`` first.

Revision ID: 0012_reading_chunks
Revises: 0011_households_unwatched
"""

from __future__ import annotations

import datetime as dt
import time

from alembic import op

revision = "0012_reading_chunks"
down_revision: str | None = "0011_households_unwatched"
branch_labels = None
depends_on = None

_WEEK = 7 * 86_400
_MONDAY = 4 * 86_400  # 1970-01-05


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE reading_chunks (hub_id varchar(64) NOT NULL, seq_first bigint NOT NULL, seq_last bigint NOT NULL,"
        " household_id varchar(64) NOT NULL, device_id varchar(128) NOT NULL, quantity varchar(32) NOT NULL,"
        " channel varchar(64) NOT NULL DEFAULT '', ts_first double precision NOT NULL,"
        " ts_last double precision NOT NULL, n integer NOT NULL, seqs bigint[] NOT NULL,"
        " ts double precision[] NOT NULL, vals double precision[] NOT NULL, vmin double precision NOT NULL,"
        " vmax double precision NOT NULL, vsum double precision NOT NULL, received_at double precision NOT NULL,"
        " CONSTRAINT reading_chunks_pk PRIMARY KEY (hub_id, seq_first, ts_first)) PARTITION BY RANGE (ts_first)"
    )
    op.execute("CREATE INDEX reading_chunks_hub_seq ON reading_chunks (hub_id, seq_last)")
    op.execute("CREATE INDEX reading_chunks_sensor_ts ON reading_chunks (household_id, device_id, quantity, ts_first)")
    op.execute(
        "CREATE INDEX reading_chunks_received ON reading_chunks USING brin (received_at) WITH (autosummarize = on)"
    )
    op.execute("CREATE TABLE reading_chunks_default PARTITION OF reading_chunks DEFAULT")
    now = time.time()
    start = _MONDAY + (now - 183 * 86_400 - _MONDAY) // _WEEK * _WEEK
    while start <= now + 5 * _WEEK:
        name = "reading_chunks_p" + dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y%m%d")
        op.execute(
            f"CREATE TABLE {name} PARTITION OF reading_chunks FOR VALUES FROM ({start!r}) TO ({start + _WEEK!r})"
        )
        start += _WEEK
    op.execute("CREATE TABLE hub_chunk_marks (hub_id varchar(64) PRIMARY KEY, chunked_to bigint NOT NULL)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "INSERT INTO readings (hub_id, seq, household_id, device_id, quantity, value, ts, received_at, channel)"
        " SELECT c.hub_id, u.seq, c.household_id, c.device_id, c.quantity, u.value, u.ts, c.received_at, c.channel"
        " FROM reading_chunks c, unnest(c.seqs, c.ts, c.vals) AS u(seq, ts, value) ON CONFLICT DO NOTHING"
    )
    op.execute("DROP TABLE hub_chunk_marks")
    op.execute("DROP TABLE reading_chunks")
    # Weeks a crash left detached (cloud_sync.register.partitions.drop_expired) hold only expired readings.
    op.execute(
        "DO $$ DECLARE t text; BEGIN FOR t IN SELECT relname FROM pg_class WHERE relkind = 'r'"
        " AND relname ~ '^reading_chunks_p[0-9]{8}$' AND relnamespace = current_schema()::regnamespace"
        " LOOP EXECUTE format('DROP TABLE %I', t); END LOOP; END $$"
    )
