"""Each hub's alarm connection as its heartbeat reports it (``hub_health.alarm_ping_ms``, ``alarm_failing``,
cloud_sync/register/fleet.py): the last ping's round trip, and whether the alarm path is failing (the last ping
failed, or the alarm listener rests after a failure). Columns rather than the heartbeat's JSON body, so that
``/metrics`` counts them with one aggregate statement on SQLite and PostgreSQL alike.

Two nullable columns only: the previous release runs unchanged on this schema (it leaves them NULL).

Revision ID: 0009_hub_alarm_path
Revises: 0008_readings_fewer_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_hub_alarm_path"
down_revision: str | None = "0008_readings_fewer_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hub_health") as batch:
        batch.add_column(sa.Column("alarm_ping_ms", sa.Double(), nullable=True))
        batch.add_column(sa.Column("alarm_failing", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hub_health") as batch:
        batch.drop_column("alarm_failing")
        batch.drop_column("alarm_ping_ms")
