"""The encrypted local store: SQLite through SQLAlchemy Core, one writer, group commit, outbox per lane.

:class:`Store` is the facade everything else calls; its parts, one job each: ``keys`` (day keys at rest and their
destruction), ``cursors`` (lane sequences, synced cursors), ``readings`` (readings as frames), ``outbox`` (items and
dead letters), ``records`` (device registry, audit log, settings), ``deletion`` (the sliced, time-boxed deletion
retention and erasure share), over ``schema``, ``engine`` and the ``writer`` thread.
"""

from gateway.store.deletion import DELETE_SLICE_S
from gateway.store.readings import TOMBSTONE_DEVICE
from gateway.store.store import DB_NAME, AuditEntry, DeviceRecord, OutboxItem, Settings, Store

__all__ = [
    "DB_NAME",
    "DELETE_SLICE_S",
    "TOMBSTONE_DEVICE",
    "AuditEntry",
    "DeviceRecord",
    "OutboxItem",
    "Settings",
    "Store",
]
