"""Alembic migrations of the register's schema; run through :mod:`cloud_sync.register.migrate`, not an ini file."""
