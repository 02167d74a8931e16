"""The household's app: passkeys, sessions, one-time sign-in links and ceremonies; the categories a household
restricted; the indexes Home and a sensor's chart read.

All additions, so the previous release runs unchanged on this schema (the rollback rule).

Revision ID: 0005_household_app
Revises: 0004_reading_channel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_household_app"
down_revision: str | None = "0004_reading_channel"
branch_labels = None
depends_on = None


def _owner_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("member_id", sa.String(64), sa.ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
        sa.Column("household_id", sa.String(64), sa.ForeignKey("households.id"), nullable=False),
    ]


def _owner_indexes(table: str) -> None:
    op.create_index(f"ix_{table}_member_id", table, ["member_id"])
    op.create_index(f"ix_{table}_household_id", table, ["household_id"])


def upgrade() -> None:
    op.create_table(
        "app_passkeys",
        sa.Column("credential_id", sa.String(512), primary_key=True),
        *_owner_columns(),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("transports", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_used_at", sa.Double, nullable=True),
    )
    _owner_indexes("app_passkeys")
    op.create_table(
        "app_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        *_owner_columns(),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
    )
    _owner_indexes("app_sessions")
    op.create_table(
        "app_signin_links",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        *_owner_columns(),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("used_at", sa.Double, nullable=True),
    )
    _owner_indexes("app_signin_links")
    op.create_table(
        "app_ceremonies",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("challenge", sa.LargeBinary, nullable=False),
        sa.Column("member_id", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index("app_ceremonies_expiry", "app_ceremonies", ["expires_at"])
    op.create_table(
        "restrictions",
        sa.Column("household_id", sa.String(64), sa.ForeignKey("households.id"), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("household_id", "category", name="restrictions_pk"),
    )
    op.create_index("readings_sensor_ts", "readings", ["household_id", "device_id", "quantity", "ts", "value"])
    op.create_index("events_device_kind_ts", "events", ["household_id", "device_id", "kind", "ts"])


def downgrade() -> None:
    op.drop_index("events_device_kind_ts", table_name="events")
    op.drop_index("readings_sensor_ts", table_name="readings")
    for table in ("restrictions", "app_ceremonies", "app_signin_links", "app_sessions", "app_passkeys"):
        op.drop_table(table)
