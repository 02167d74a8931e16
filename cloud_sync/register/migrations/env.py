"""Alembic's environment: migrations run on the connection :mod:`cloud_sync.register.migrate` hands over (it holds
the migration lock), against the register's whole metadata, the notification tables included."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cloud_sync.register import db
from cloud_sync.register import hubexports as _hub_exports  # noqa: F401 -- on db.metadata
from cloud_sync.register.notify import schema as _notify_tables  # noqa: F401 -- on db.metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `kotihub-register db upgrade`, which passes the connection")
context.configure(
    connection=connection,
    target_metadata=db.metadata,
    compare_type=True,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
