"""Baseline: the schema of the release before migrations (commit 15f63d6).

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from alembic import op

from cloud_sync.register.migrations.baseline_schema import BASELINE

revision = "0001_baseline"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The frozen copy, so the tables made here and the check a previous release's database must pass before it is
    # adopted (migrate.adopt) read one definition.
    BASELINE.create_all(op.get_bind())


def downgrade() -> None:
    BASELINE.drop_all(op.get_bind())
