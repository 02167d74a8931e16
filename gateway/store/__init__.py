"""The encrypted local store: SQLite through SQLAlchemy Core, one writer, group commit, outbox per lane."""

from gateway.store.store import DB_NAME, AuditEntry, DeviceRecord, OutboxItem, Store

__all__ = ["DB_NAME", "AuditEntry", "DeviceRecord", "OutboxItem", "Store"]
