"""Command wake-ups across register processes: NOTIFY kotihub_commands with the hub id when a command is queued.

PostgreSQL only (SQLite has no NOTIFY; a register on it is one process). The notification is sent at commit, so a
woken long-poll always finds the command (cloud_sync/register/wakeups.py listens). No table changes: the previous
release runs unchanged on this schema, which is what the rollback rule asks of a migration.

Revision ID: 0002_command_notify
Revises: 0001_baseline
"""

from __future__ import annotations

from alembic import op

revision = "0002_command_notify"
down_revision: str | None = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION kotihub_command_queued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('kotihub_commands', NEW.hub_id);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER commands_queued AFTER INSERT ON commands FOR EACH ROW EXECUTE FUNCTION kotihub_command_queued()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER commands_queued ON commands")
    op.execute("DROP FUNCTION kotihub_command_queued()")
