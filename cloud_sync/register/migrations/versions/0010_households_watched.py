"""When a member last had the household's app open (``households.watched_until``, cloud_sync/register/watching.py):
while it lies ahead, the household's hubs send readings within seconds instead of lingering.

One nullable column: the previous release runs unchanged on this schema (it never reads or writes it).

Revision ID: 0010_households_watched
Revises: 0009_hub_alarm_path
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_households_watched"
down_revision: str | None = "0009_hub_alarm_path"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("households") as batch:
        batch.add_column(sa.Column("watched_until", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("households") as batch:
        batch.drop_column("watched_until")
