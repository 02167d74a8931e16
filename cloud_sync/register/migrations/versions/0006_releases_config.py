"""Signed releases' staged rollout (rollouts, per-hub pins and holds, outcomes) and remote configuration pushes.

All additions, so the previous release runs unchanged on this schema (the rollback rule).

Revision ID: 0006_releases_config
Revises: 0005_household_app
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_releases_config"
down_revision: str | None = "0005_household_app"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_rollouts",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("max_failure_rate", sa.Double, nullable=False),
        sa.Column("min_reports", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "release_overrides",
        sa.Column("hub_id", sa.String(128), primary_key=True),
        sa.Column("pin_version", sa.String(64), nullable=True),
        sa.Column("hold", sa.Boolean, nullable=False),
        sa.Column("set_by", sa.String(256), nullable=False),
        sa.Column("set_at", sa.Double, nullable=False),
    )
    op.create_table(
        "release_outcomes",
        sa.Column("hub_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(512), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table(
        "config_pushes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("hub_id", sa.String(128), nullable=False),
        sa.Column("toml", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(512), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_config_pushes_hub_id", "config_pushes", ["hub_id"])


def downgrade() -> None:
    op.drop_index("ix_config_pushes_hub_id", table_name="config_pushes")
    for table in ("config_pushes", "release_outcomes", "release_overrides", "release_rollouts"):
        op.drop_table(table)
