"""The outbox's items: events, clip records and diagnostics, one encrypted row each (``items``), per lane and
sequence; the items the register refused for good (``dead_letters``). Readings, the busiest lane, are frames
(:mod:`gateway.store.readings`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import crypto
from gateway.errors import KeyDestroyedError
from gateway.store import schema
from gateway.store.schema import coarse


class OutboxItem(msgspec.Struct, frozen=True):
    seq: int
    ts: float
    body: dict[str, Any]


_i = schema.items


def item_context(lane: str, seq: int) -> bytes:
    """Associated data binding an item's record to its lane and sequence: a moved or swapped record fails to open."""
    return b"items|%s|%d" % (lane.encode(), seq)


def write_item(
    conn: Connection, keyring: crypto.KeyRing, lane: str, seq: int, ts: float, plaintext: bytes, ref: str | None
) -> None:
    epoch = crypto.epoch_of(ts)
    blob = keyring.seal(epoch, plaintext, item_context(lane, seq))
    conn.execute(sa.insert(_i).values(lane=lane, seq=seq, epoch=epoch, ts=coarse(ts), ref=ref, blob=blob))


def pending(conn: Connection, keyring: crypto.KeyRing, lane: str, after: int, limit: int) -> list[OutboxItem]:
    rows = conn.execute(
        sa.select(_i.c.seq, _i.c.ts, _i.c.blob)
        .where(_i.c.lane == lane, _i.c.seq > after)
        .order_by(_i.c.seq)
        .limit(limit)
    ).all()
    out = []
    for row in rows:
        body = msgspec.json.decode(keyring.open(row.blob, item_context(lane, row.seq)))
        out.append(OutboxItem(int(row.seq), exact_ts(body, row.ts), body))
    return out


def iter_items(conn: Connection, keyring: crypto.KeyRing, lane: str, *, skip_destroyed: bool) -> Iterator[OutboxItem]:
    result = conn.execute(sa.select(_i.c.seq, _i.c.ts, _i.c.blob).where(_i.c.lane == lane).order_by(_i.c.seq))
    for row in result:
        try:
            plain = keyring.open(row.blob, item_context(lane, row.seq))
        except KeyDestroyedError:
            if skip_destroyed:
                continue
            raise
        body = msgspec.json.decode(plain)
        yield OutboxItem(int(row.seq), exact_ts(body, row.ts), body)


def has_ref(conn: Connection, lane: str, ref: str) -> bool:
    """Whether an item of ``lane`` refers to ``ref`` (a clip id) still."""
    query = sa.select(_i.c.seq).where(_i.c.lane == lane, _i.c.ref == ref).limit(1)
    return conn.execute(query).first() is not None


def depth(conn: Connection, lane: str, synced: int) -> int:
    count = conn.execute(sa.select(sa.func.count()).select_from(_i).where(_i.c.lane == lane, _i.c.seq > synced))
    return int(count.scalar_one())


def count_all(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_i)).scalar_one())


def count_days_through(conn: Connection, last_epoch: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_i).where(_i.c.epoch <= last_epoch)).scalar_one())


def write_dead_letter(conn: Connection, lane: str, seq: int, ts: float, reason: str) -> None:
    conn.execute(
        sa.insert(schema.dead_letters).prefix_with("OR REPLACE").values(lane=lane, seq=seq, ts=ts, reason=reason[:500])
    )


def dead_letters(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(schema.dead_letters))]


def exact_ts(body: dict[str, Any], stored: float) -> float:
    """An item's exact time, from inside its record (events carry ``ts``, clip records ``started``)."""
    for key in ("ts", "started"):
        value = body.get(key)
        if isinstance(value, int | float):
            return float(value)
    return float(stored)
