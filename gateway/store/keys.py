"""Day keys at rest: each UTC day's data key, wrapped under the master key (``epoch_keys``), and their destruction.

Destroying a day's wrapped key is crypto-shredding: every record sealed under it is unreadable from that commit
on, before its rows are deleted. The key ring (:class:`gateway.crypto.KeyRing`) caches unwrapped keys; whoever
destroys one here also tells the ring to forget it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.store import schema

REGISTRY_EPOCH: Final = 0xFFFF_FFFF
"""Device records and driver memory live under this epoch: it is not a day, so retention never shreds it; erasing
everything does. (Audit entries written before they moved to day keys are under it too; retention deletes those
rows by age.)"""

_k = schema.epoch_keys


def load_wrapped(conn: Connection, epoch: int) -> bytes | None:
    value = conn.execute(sa.select(_k.c.wrapped).where(_k.c.epoch == epoch)).scalar_one_or_none()
    return bytes(value) if value is not None else None


def save_wrapped(conn: Connection, epoch: int, wrapped: bytes) -> None:
    conn.execute(sa.insert(_k).values(epoch=epoch, wrapped=wrapped))


def shred_all(conn: Connection) -> int:
    """Destroys every key, the registry's included; returns how many."""
    return int(conn.execute(sa.delete(_k)).rowcount)


def shred_days_through(conn: Connection, last_epoch: int) -> list[int]:
    """Destroys the key of every day up to ``last_epoch`` (never the registry's); returns those days."""
    epochs = list(
        conn.execute(sa.select(_k.c.epoch).where(_k.c.epoch <= last_epoch, _k.c.epoch != REGISTRY_EPOCH)).scalars()
    )
    if epochs:
        conn.execute(sa.delete(_k).where(_k.c.epoch.in_(epochs)))
    return epochs


def count_days_through(conn: Connection, last_epoch: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_k).where(_k.c.epoch <= last_epoch)).scalar_one())


def device_tag(tag_key: bytes, device_id: str) -> str:
    """A device's id as the store indexes it: keyed, so the database alone does not say which device a row is."""
    return hmac.new(tag_key, device_id.encode(), hashlib.sha256).hexdigest()[:32]
