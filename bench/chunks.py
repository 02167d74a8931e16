"""The packed-chunk layout of readings (docs/scale.md "Readings stored in packed chunks"), as the bench measures it.

Not product code: ``bench/readings_chunks.py`` loads it into PostgreSQL beside today's ``readings`` and
``tests/unit/test_reading_chunks.py`` checks it round-trips, so the figures are for a layout that holds every
reading exactly once.

A chunk is one sensor's readings ``(device_id, quantity, channel)`` of one batch, in seq order. ``seq_first`` and
``seq_last`` are the chunk's own first and last seq (not the batch's: a batch's chunks would then share a key), so
``(hub_id, seq_first)`` is unique and the primary key ``(hub_id, seq_first, ts_first)`` adds only the partition key.
``ts_first``/``ts_last`` are the earliest and latest reading time in it; a chunk never spans more than
:data:`MAX_SPAN_S` (a sensor's readings further apart in one batch, e.g. a hub whose clock was set, start a new
chunk), so a chart finds every chunk that reaches its span by ``ts_first >= since - MAX_SPAN_S``.

Dedup: a hub's readings lane sends its outbox in seq order, one batch at a time, and a batch commits whole, so every
seq at or below the highest the register stored for a hub (its *mark*) is held. Readings at or below the mark are
dropped before grouping (a resend cut differently stores only what is new); a resend cut the same way drops whole,
and were it to reach the table it would meet its first copy's primary key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from cloud_sync.protocol import ReadingItem

# The table's layout is the product's (cloud_sync/register/chunks.py); what is the bench's own is the mark-based
# dedup it measured before the product chose a lock and a lookup of what is held.
from cloud_sync.register.chunks import COLUMNS, COPY_TYPES, MAX_SPAN_S, Chunk, by_sensor, pack  # noqa: F401


class Reading(NamedTuple):
    """One reading as the export gives it back (the columns of a ``readings`` row but the hub and arrival)."""

    seq: int
    device_id: str
    quantity: str
    channel: str
    ts: float
    value: float


def encode(
    items: Sequence[ReadingItem], hub_id: str, household_id: str, received_at: float, *, mark: int = -1
) -> list[Chunk]:
    """The chunks of a batch's readings above ``mark`` (the hub's highest stored seq; -1: none), one pass.

    Deterministic: the same items and mark give the same chunks, so a resend cut the same way meets its keys."""
    out = []
    for sensor, group in by_sensor(it for it in items if it.seq > mark).items():
        for part in _cut(group):
            seqs = [it.seq for it in part]
            ts = [it.body.ts for it in part]
            vals = [it.body.value for it in part]
            out.append(pack(hub_id, household_id, sensor, seqs, ts, vals, received_at))
    return out


def _cut(group: list[ReadingItem]) -> Iterable[list[ReadingItem]]:
    """One sensor's readings in seq order, cut where the next would stretch the chunk past :data:`MAX_SPAN_S`."""
    lo = hi = group[0].body.ts
    start = 0
    for i in range(1, len(group)):
        t = group[i].body.ts
        lo2, hi2 = min(lo, t), max(hi, t)
        if hi2 - lo2 > MAX_SPAN_S:
            yield group[start:i]
            start, lo, hi = i, t, t
        else:
            lo, hi = lo2, hi2
    yield group[start:]


def unnest(chunks: Iterable[Chunk]) -> list[Reading]:
    """The readings the chunks hold, as the export and a chart read them back."""
    return [
        Reading(seq, c.device_id, c.quantity, c.channel, t, v)
        for c in chunks
        for seq, t, v in zip(c.seqs, c.ts, c.vals, strict=True)
    ]
