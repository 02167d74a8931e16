"""Readings keep two indexes besides the primary key instead of three, and the arrival-time one is a BRIN on
PostgreSQL: every index is maintained for every reading ingested (docs/scale.md, "Indexes on readings").

* ``readings_household_ts`` ``(household_id, ts)`` is dropped. Its readers now use the primary key
  ``(hub_id, seq, …)`` hub by hub (Home's newest readings, the export) or the prefix of ``readings_sensor_ts``
  ``(household_id, device_id, quantity, ts, value)`` (the erasure, the counts of "what we hold", the chart page's
  list of sensors, by skipping from sensor to sensor).
* ``readings_received`` (retention by arrival time) becomes a BRIN on PostgreSQL: readings are appended in arrival
  order, so each block range's ``received_at`` is narrow, and a BRIN is a few pages per partition instead of a
  b-tree entry per reading; ``autosummarize`` summarizes each block range once full, so retention's scan skips all
  but the newest. SQLite keeps the b-tree (it has no BRIN).

On a large register the drops are quick, and building the BRIN is one pass over each partition.

Rollback: the previous release refuses to start on this schema (an index it knows is missing), so roll it back only
after ``kotihub-register db downgrade 0007_hub_exports``, which rebuilds the b-trees (a pass over the table each).

Revision ID: 0008_readings_fewer_indexes
Revises: 0007_hub_exports
"""

from __future__ import annotations

from alembic import op

revision = "0008_readings_fewer_indexes"
down_revision: str | None = "0007_hub_exports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("readings_household_ts", table_name="readings")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("readings_received", table_name="readings")
        op.create_index(
            "readings_received",
            "readings",
            ["received_at"],
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("readings_received", table_name="readings")
        op.create_index("readings_received", "readings", ["received_at"])
    op.create_index("readings_household_ts", "readings", ["household_id", "ts"])
