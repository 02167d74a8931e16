"""Live mode's marks leave the database (cloud_sync/register/watching.py keeps them in the register's memory): every
``households.watched_until`` becomes NULL, and this release never writes it again.

The column stays, so that the release before (0010's, which reads and writes it) still runs on this schema (the
rollback rule, docs/register.md); a later release drops it. The earlier row versions go from PostgreSQL's table
pages with autovacuum and from the WAL with its segments; an erasure or retention scrub rewrites ``households``
at once (cloud_sync/register/scrub.py).

Revision ID: 0011_households_unwatched
Revises: 0010_households_watched
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_households_unwatched"
down_revision: str | None = "0010_households_watched"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE households SET watched_until = NULL WHERE watched_until IS NOT NULL"))


def downgrade() -> None:
    """Nothing to put back: a mark lasted five minutes, and the release before makes new ones as pages are seen."""
