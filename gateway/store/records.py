"""The hub's own records: the device registry, the audit log of changes to personal data, and settings (small
named values: the erasure job, its receipts and outbox, the clock's confirmation, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import crypto
from gateway.errors import KeyDestroyedError
from gateway.model import DeviceInfo
from gateway.store import schema
from gateway.store.keys import REGISTRY_EPOCH
from gateway.store.schema import SEEN_S, coarse


class DeviceRecord(msgspec.Struct, frozen=True):
    info: DeviceInfo
    first_seen: float
    last_seen: float


class AuditEntry(msgspec.Struct, frozen=True):
    ts: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


_d, _a, _s = schema.devices, schema.audit, schema.settings
_json = msgspec.json.Encoder()


def _device_context(tag: str) -> bytes:
    return b"devices|" + tag.encode()


def upsert_device(conn: Connection, keyring: crypto.KeyRing, tag: str, plain: bytes, now: float) -> bool:
    """Registers or updates the device under ``tag``; True if it was new."""
    blob = keyring.seal(REGISTRY_EPOCH, plain, _device_context(tag))
    if conn.execute(sa.select(_d.c.tag).where(_d.c.tag == tag)).first() is None:
        conn.execute(
            sa.insert(_d).values(tag=tag, first_seen=coarse(now, 86_400.0), last_seen=coarse(now, SEEN_S), blob=blob)
        )
        return True
    conn.execute(sa.update(_d).where(_d.c.tag == tag).values(last_seen=coarse(now, SEEN_S), blob=blob))
    return False


def touch_devices(conn: Connection, last_seen: dict[str, float]) -> None:
    """``last_seen`` by device tag."""
    rows = [{"t": tag, "s": coarse(seen, SEEN_S)} for tag, seen in last_seen.items()]
    if rows:
        conn.execute(sa.update(_d).where(_d.c.tag == sa.bindparam("t")).values(last_seen=sa.bindparam("s")), rows)


def delete_device(conn: Connection, tag: str) -> int:
    return int(conn.execute(sa.delete(_d).where(_d.c.tag == tag)).rowcount)


def iter_devices(conn: Connection, keyring: crypto.KeyRing, *, skip_destroyed: bool) -> Iterator[DeviceRecord]:
    for row in conn.execute(sa.select(_d)).all():
        try:
            plain = keyring.open(row.blob, _device_context(row.tag))
        except KeyDestroyedError:
            if skip_destroyed:
                continue
            raise
        yield DeviceRecord(msgspec.msgpack.decode(plain, type=DeviceInfo), float(row.first_seen), float(row.last_seen))


def last_audit_id(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_a.c.id), 0))).scalar_one())


def write_audit(conn: Connection, keyring: crypto.KeyRing, entry_id: int, ts: float, entry: bytes) -> None:
    # Under the day's key, like the data it is about: retention shreds it with that day.
    epoch = crypto.epoch_of(ts)
    blob = keyring.seal(epoch, entry, b"audit|%d" % entry_id)
    conn.execute(sa.insert(_a).values(id=entry_id, epoch=epoch, ts=coarse(ts), blob=blob))


def iter_audit(conn: Connection, keyring: crypto.KeyRing, *, skip_destroyed: bool) -> Iterator[AuditEntry]:
    for row in conn.execute(sa.select(_a).order_by(_a.c.id)):
        try:
            plain = keyring.open(row.blob, b"audit|%d" % row.id)
        except KeyDestroyedError:
            if skip_destroyed:
                continue
            raise
        yield msgspec.msgpack.decode(plain, type=AuditEntry)


class Settings:
    """The settings as one transaction sees them: what :meth:`gateway.store.Store.edit_settings` hands its
    function, so a read-modify-write of several keys commits together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, key: str, default: Any = None) -> Any:
        value = self._conn.execute(sa.select(_s.c.value).where(_s.c.key == key)).scalar_one_or_none()
        return default if value is None else msgspec.json.decode(value)

    def put(self, key: str, value: Any) -> None:
        """Sets ``key``; None removes it."""
        if value is None:
            self._conn.execute(sa.delete(_s).where(_s.c.key == key))
        else:
            text = _json.encode(value).decode()
            self._conn.execute(sa.insert(_s).prefix_with("OR REPLACE").values(key=key, value=text))
