"""Readings as frames: every reading of one group commit in one compressed, encrypted row (``reading_frames``),
under the key of its UTC day (a commit spanning midnight writes one frame per day). Sequences are the frame's
``first_seq`` plus the reading's place in it; an erased reading stays as a tombstone so its sequence stays spent."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import crypto
from gateway.errors import KeyDestroyedError
from gateway.model import Reading
from gateway.store import frames, schema
from gateway.store.outbox import OutboxItem
from gateway.store.schema import coarse

TOMBSTONE_DEVICE = ""
"""The device id of an erased reading: its sequence is spent, its content gone."""

_f = schema.reading_frames


def write(conn: Connection, keyring: crypto.KeyRing, readings: Sequence[Reading], first_seq: int) -> None:
    """Writes ``readings`` (sequences from ``first_seq``) as one frame per UTC day they span."""
    stamps = [r.ts for r in readings]
    start = 0
    while start < len(readings):
        epoch = crypto.epoch_of(stamps[start])
        end = start + 1
        while end < len(readings) and crypto.epoch_of(stamps[end]) == epoch:
            end += 1
        run = readings[start:end]
        blob = keyring.seal(epoch, frames.encode(run), frames.context(first_seq + start, len(run)))
        conn.execute(
            sa.insert(_f).values(
                first_seq=first_seq + start,
                n=len(run),
                epoch=epoch,
                ts_min=coarse(min(stamps[start:end])),
                ts_max=coarse(max(stamps[start:end])),
                blob=blob,
            )
        )
        start = end


def pending(conn: Connection, keyring: crypto.KeyRing, after: int, limit: int) -> list[OutboxItem]:
    """Up to ``limit`` readings after sequence ``after`` as outbox items, oldest first (tombstones skipped)."""
    out: list[OutboxItem] = []
    containing = conn.execute(
        sa.select(_f).where(_f.c.first_seq <= after).order_by(_f.c.first_seq.desc()).limit(1)
    ).first()
    rows = [containing] if containing is not None and containing.first_seq + containing.n - 1 > after else []
    # Every frame holds at least one reading, so ``limit`` frames always suffice.
    following = conn.execute(sa.select(_f).where(_f.c.first_seq > after).order_by(_f.c.first_seq).limit(limit))
    for row in itertools.chain(rows, following):
        if len(out) >= limit:
            break
        for offset, r in enumerate(frames.decode(keyring.open(row.blob, frames.context(row.first_seq, row.n)))):
            seq = row.first_seq + offset
            if r.device_id == TOMBSTONE_DEVICE:
                continue
            if seq > after and len(out) < limit:
                body = {"device_id": r.device_id, "quantity": r.quantity.value, "value": r.value, "ts": r.ts}
                if r.channel:  # only then: a register older than channels still takes every other reading
                    body["channel"] = r.channel
                out.append(OutboxItem(seq, r.ts, body))
    return out


def iter_all(
    conn: Connection, keyring: crypto.KeyRing, *, since_seq: int, skip_destroyed: bool
) -> Iterator[tuple[int, Reading]]:
    result = conn.execution_options(stream_results=True).execute(
        sa.select(_f).where(_f.c.first_seq + _f.c.n > since_seq).order_by(_f.c.first_seq)
    )
    for row in result:
        try:
            plain = keyring.open(row.blob, frames.context(row.first_seq, row.n))
        except KeyDestroyedError:
            if skip_destroyed:
                continue
            raise
        for offset, r in enumerate(frames.decode(plain)):
            if row.first_seq + offset >= since_seq:
                yield row.first_seq + offset, r


def depth(conn: Connection, synced: int) -> int:
    """Readings after sequence ``synced``."""
    count = int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(_f.c.n), 0)).where(_f.c.first_seq > synced)).scalar_one()
    )
    straddle = conn.execute(
        sa.select(_f.c.first_seq, _f.c.n).where(_f.c.first_seq <= synced).order_by(_f.c.first_seq.desc()).limit(1)
    ).first()
    if straddle is not None:
        count += max(0, straddle.first_seq + straddle.n - 1 - synced)
    return count


def count_all(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(_f.c.n), 0))).scalar_one())


def count_days_through(conn: Connection, last_epoch: int) -> int:
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(_f.c.n), 0)).where(_f.c.epoch <= last_epoch)).scalar_one()
    )
