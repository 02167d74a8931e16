"""The household's app: the categories a household restricted, and the index a sensor's chart reads.

Both are additions, so the previous release runs unchanged on this schema (the rollback rule).

Revision ID: 0004_app_restrictions
Revises: 0003_reading_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_app_restrictions"
down_revision: str | None = "0003_reading_channel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restrictions",
        sa.Column("household_id", sa.String(64), sa.ForeignKey("households.id"), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("household_id", "category", name="restrictions_pk"),
    )
    # One sensor's readings in time order with their values: a chart reads this index only.
    op.create_index("readings_sensor_ts", "readings", ["household_id", "device_id", "quantity", "ts", "value"])


def downgrade() -> None:
    op.drop_index("readings_sensor_ts", table_name="readings")
    op.drop_table("restrictions")
