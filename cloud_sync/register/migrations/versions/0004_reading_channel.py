"""A reading's optional channel, so two probes of one device (a BTHome sensor's two temperatures) stay apart.

Added with an empty-string server default: the previous release, which inserts readings without a channel, runs
unchanged on this schema (the rollback rule), and every existing reading is channel ''.

Revision ID: 0004_reading_channel
Revises: 0003_readings_partitioned
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_reading_channel"
down_revision: str | None = "0003_readings_partitioned"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("readings", sa.Column("channel", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.drop_column("channel")
