"""What drivers remember across restarts, encrypted like every other record of the store.

A record is ``(namespace, key) -> bytes``: Zigbee2MQTT's friendly-name map, Home Assistant discovery configs, the
MQTT driver's recently handled message digests, BLE replay counters and the devices the household adopted. The row
holds a keyed hash of the key (keys are topics, names and MACs: personal data) and, when the record is about one
device, that device's tag, so erasing the device removes it. The key itself is inside the AEAD record.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.lru import Lru
from gateway.store import schema
from gateway.store.keys import REGISTRY_EPOCH

if TYPE_CHECKING:
    from gateway.store.store import Store

__all__ = ["StoreMemory"]

_table = schema.driver_state
_UPSERT = sa.insert(_table).prefix_with("OR REPLACE")
_DELETE = sa.delete(_table).where((_table.c.ns == sa.bindparam("ns")) & (_table.c.key_tag == sa.bindparam("tag")))
TAG_CACHE = 4096


class StoreMemory:
    """Implements :class:`drivers.memory.Memory` over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._key_tag = hashlib.sha256(b"kotihub driver_state key|" + store.keyring.derive_tag_key()).digest()
        self._tags: Lru[tuple[str, str], str] = Lru(TAG_CACHE)

    def _tag(self, ns: str, key: str) -> str:
        return hmac.new(self._key_tag, f"{ns}|{key}".encode(), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def _context(ns: str, tag: str) -> bytes:
        return b"driver_state|" + ns.encode() + b"|" + tag.encode()

    async def load(self, ns: str) -> dict[str, bytes]:
        """Every record of ``ns``, decrypted."""
        store = self._store

        def read(conn: Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for row in conn.execute(sa.select(_table.c.key_tag, _table.c.blob).where(_table.c.ns == ns)):
                plain = store.keyring.open(row.blob, self._context(ns, row.key_tag))
                key, value = msgspec.msgpack.decode(plain, type=tuple[str, bytes])
                out[key] = value
            return out

        return dict(await asyncio.to_thread(store.read, read))

    def _write(self, ns: str, key: str, value: bytes | None, device_id: str | None) -> Callable[[Connection], None]:
        # Called for every message a driver handles: only cheap work here; sealing happens in the writer thread.
        tag = self._tags.get((ns, key))
        if tag is None:
            tag = self._tags[(ns, key)] = self._tag(ns, key)
        keyring = self._store.keyring
        if value is None:

            def delete(conn: Connection) -> None:
                conn.execute(_DELETE, {"ns": ns, "tag": tag})

            return delete
        device_tag = self._store.device_tag(device_id) if device_id else None

        def write(conn: Connection) -> None:
            blob = keyring.seal(REGISTRY_EPOCH, msgspec.msgpack.encode((key, value)), self._context(ns, tag))
            conn.execute(_UPSERT, {"ns": ns, "key_tag": tag, "device_tag": device_tag, "blob": blob})

        return write

    def save(
        self, ns: str, key: str, value: bytes | None, *, device_id: str | None = None, with_readings: bool = False
    ) -> asyncio.Future[Any]:
        """Writes (``None``: deletes) one record; the future resolves once committed. ``with_readings``: in the same
        transaction as the readings submitted in this event-loop tick (a later save of the same record in the
        tick replaces it)."""
        fn = self._write(ns, key, value, device_id)
        if with_readings:
            return self._store.ride_along(f"{ns}|{key}", fn)
        return self._store.run_write_soon(fn)

    def commit_soon(self) -> asyncio.Future[Any]:
        return self._store.commit_soon()


def erase_device(conn: Connection, device_tag: str) -> int:
    """Deletes the driver records about one device (erasure); returns how many."""
    return int(conn.execute(sa.delete(_table).where(_table.c.device_tag == device_tag)).rowcount)
