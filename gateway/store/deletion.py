"""Deletion in slices: the one routine retention and erasure share.

Each slice is one writer transaction that works until its time budget is spent, then commits; the next slice
starts from the cursor the last one committed. So a purge or an erasure of any size never holds the writer longer
than a budget (ingest never stalls behind it), and a crash loses at most one slice, which the resumed run redoes.
A step decides what a slice does: delete rows matching a condition, blank a device's readings inside frames, or
delete the outbox items of a device or kind.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import crypto
from gateway.errors import DecryptError, KeyDestroyedError
from gateway.model import Lane, Reading
from gateway.store import frames, schema
from gateway.store.outbox import item_context
from gateway.store.readings import TOMBSTONE_DEVICE

DELETE_SLICE_S: Final = 0.02
"""Longest a single delete transaction may hold the writer; keeps ingest stalls far under 50 ms."""


class Slice(NamedTuple):
    rows: int
    """Rows deleted (or readings blanked) in this slice."""
    refs: list[str]
    """Clip references of deleted items: their spool files are the caller's to remove."""
    cursor: Any
    """Where the next slice starts."""
    done: bool


Step = Callable[[Connection, float, Any], Slice]
"""``step(conn, deadline, cursor)``: work from ``cursor`` until ``time.perf_counter()`` passes ``deadline``."""


async def in_slices(
    run_write: Callable[[Callable[[Connection], Any]], Awaitable[Any]],
    step: Step,
    *,
    budget_s: float = DELETE_SLICE_S,
    on_slice: Callable[[int, float], None] | None = None,
) -> tuple[int, list[str]]:
    """Runs ``step`` one committed slice at a time until it is done; returns the rows and clip refs in all.
    ``on_slice(rows, seconds)`` follows progress."""
    total, refs, cursor = 0, [], None
    while True:
        started = time.perf_counter()
        s: Slice = await run_write(functools.partial(_timed, step=step, budget_s=budget_s, cursor=cursor))
        total += s.rows
        refs += s.refs
        cursor = s.cursor
        if on_slice is not None:
            on_slice(s.rows, time.perf_counter() - started)
        if s.done:
            return total, refs


def _timed(conn: Connection, *, step: Step, budget_s: float, cursor: Any) -> Slice:
    return step(conn, time.perf_counter() + budget_s, cursor)


def delete_where(table: sa.Table, condition: sa.ColumnElement[bool]) -> Step:
    """Deletes ``table``'s rows matching ``condition``."""
    key = list(table.primary_key.columns)
    chunk = 8 if table is schema.reading_frames else 200  # frames are large: secure_delete zeroes every page
    cols = [*key, table.c.ref] if table is schema.items else key

    def step(conn: Connection, deadline: float, cursor: Any) -> Slice:
        deleted = 0
        refs: list[str] = []
        while True:  # one chunk at least, so every slice makes progress
            rows = conn.execute(sa.select(*cols).where(condition).limit(chunk)).all()
            if not rows:
                return Slice(deleted, refs, None, True)
            if table is schema.items:
                refs.extend(r.ref for r in rows if r.ref and r.lane == Lane.CLIPS.value)
            if len(key) == 1:
                conn.execute(sa.delete(table).where(key[0].in_([r[0] for r in rows])))
            else:
                conn.execute(sa.delete(table).where(sa.tuple_(*key).in_([tuple(r[: len(key)]) for r in rows])))
            deleted += len(rows)
            if time.perf_counter() >= deadline:
                break
        return Slice(deleted, refs, None, False)

    return step


def blank_readings(keyring: crypto.KeyRing, device: str | None) -> Step:
    """Rewrites every frame holding ``device``'s readings (every reading for None) with them blanked: the
    sequences stay (the uplink's cursors and the register's dedupe rely on them), the content is gone."""
    f = schema.reading_frames

    def step(conn: Connection, deadline: float, cursor: Any) -> Slice:
        after = int(cursor or 0)
        blanked = 0
        while True:  # one chunk at least, so every slice makes progress
            rows = conn.execute(sa.select(f).where(f.c.first_seq > after).order_by(f.c.first_seq).limit(8)).all()
            if not rows:
                return Slice(blanked, [], after, True)
            for row in rows:
                after = row.first_seq
                try:
                    readings = frames.decode(keyring.open(row.blob, frames.context(row.first_seq, row.n)))
                except KeyDestroyedError:
                    continue  # already unreadable: retention got there first
                hit = [
                    i
                    for i, r in enumerate(readings)
                    if (device is None or r.device_id == device) and r.device_id != TOMBSTONE_DEVICE
                ]
                if not hit:
                    continue
                for i in hit:
                    readings[i] = Reading(TOMBSTONE_DEVICE, readings[i].quantity, math.nan, row.ts_min)
                blob = keyring.seal(row.epoch, frames.encode(readings), frames.context(row.first_seq, row.n))
                conn.execute(sa.update(f).where(f.c.first_seq == row.first_seq).values(blob=blob))
                blanked += len(hit)
            if time.perf_counter() >= deadline:
                break
        return Slice(blanked, [], after, False)

    return step


def delete_items(keyring: crypto.KeyRing, lane: str, *, device: str | None, kinds: tuple[str, ...] | None) -> Step:
    """Deletes ``lane``'s items about ``device`` (any for None) of ``kinds`` (any for None)."""
    i = schema.items

    def step(conn: Connection, deadline: float, cursor: Any) -> Slice:
        after = int(cursor or 0)
        deleted = 0
        refs: list[str] = []
        while True:  # one chunk at least, so every slice makes progress
            rows = conn.execute(
                sa.select(i).where(i.c.lane == lane, i.c.seq > after).order_by(i.c.seq).limit(200)
            ).all()
            if not rows:
                return Slice(deleted, refs, after, True)
            doomed: list[int] = []
            for row in rows:
                after = row.seq
                try:
                    body = msgspec.json.decode(keyring.open(row.blob, item_context(lane, row.seq)))
                except DecryptError:
                    continue
                if device is not None and body.get("device_id") != device:
                    continue
                if kinds is not None and body.get("kind") not in kinds:
                    continue
                doomed.append(row.seq)
                if row.ref:
                    refs.append(row.ref)
            if doomed:
                conn.execute(sa.delete(i).where(i.c.lane == lane, i.c.seq.in_(doomed)))
                deleted += len(doomed)
            if time.perf_counter() >= deadline:
                break
        return Slice(deleted, refs, after, False)

    return step
