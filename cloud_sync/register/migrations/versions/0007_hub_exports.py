"""The hub's sealed copy of the household's data (``hub_exports``, cloud_sync/register/hubexports.py): one row per
uploaded answer to an ``export`` command, its age ciphertext in the blob store, kept 7 days. A new table only: the
previous release runs unchanged on this schema.

Revision ID: 0007_hub_exports
Revises: 0006_releases_config
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_hub_exports"
down_revision: str | None = "0006_releases_config"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_exports",
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("export_id", sa.String(64), nullable=False),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("completed_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("household_id", "export_id"),
    )


def downgrade() -> None:
    op.drop_table("hub_exports")
