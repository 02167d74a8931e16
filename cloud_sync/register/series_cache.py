"""Hourly aggregates of a charted sensor, kept in the register process's memory so that a long chart (six months of
a sensor reporting every minute: 263 000 readings) is not re-aggregated from every row at every request.

Only memory, never the database: nothing derived from the readings outlives them on disk. An entry is exact:

* new rows are folded in incrementally, found through the readings' primary key (``hub_id, seq > watermark``:
  a hub's seq only grows, so these are the rows delivered since, late ones included);
* rows go only by erasure or retention, and every one of those writes an audit row (``household.erase``,
  ``command.erase.done``, ``retention.purge``): every use reads the newest such row's id (an index probe) and
  rebuilds the entry when it changed, so erased readings are not shown from the cache;
* as a safety net against any other change behind its back, an entry is also checked by counting the sensor's
  rows in the charted hours (an index-only count: cheaper than the aggregation, but a scan) at least every
  :data:`COUNT_EVERY_S`, and at every use for :data:`GRACE_S` after an erasure was recorded (a hub's erasure is
  recorded just before its rows go); a different count rebuilds it;
* the hours at both edges of the span come from the raw rows, so the span is exact too.

On PostgreSQL readings may also be in packed chunks (cloud_sync/register/chunks.py): every query of the rows above
has its twin on ``reading_chunks`` in the same snapshot (a hub's chunks found after the watermark by
``(hub_id, seq_last)``, a hub's highest seq the greater of its rows' and its chunks'), so an entry holds the same
whichever table a reading is in.

A bucket takes the hours that start in it (``series.downsample`` places each reading by its own time instead);
the cache is used only when buckets are at least :data:`MIN_BUCKET_S` wide, so an hour never strays by more than
half a bucket. Entries unused for :data:`IDLE_S` go, and at most :data:`MAX_SENSORS` are kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Engine, Integer, cast, func, select

from cloud_sync.register import chunks, db
from cloud_sync.register.series import (
    MAX_BUCKETS,
    MAX_SPAN_S,
    MIN_BUCKETS,
    Buckets,
    chunk_groups,
    downsample,
    snapshot,
)

HOUR: Final = 3600
MIN_BUCKET_S: Final = 2 * HOUR
MAX_SENSORS: Final = 64
IDLE_S: Final = 600.0
COUNT_EVERY_S: Final = 60.0
GRACE_S: Final = 120.0
DELETING_ACTIONS: Final = ("household.erase", "command.erase.done")
"""Audit actions recorded with every deletion of a household's readings (retention's is ``retention.purge``)."""

_Key = tuple[str, str, str]
_Agg = list[float]  # [min, max, sum, count]


@dataclass
class _Entry:
    first_hour: int
    generation: tuple[int, int]
    """The newest deleting audit ids (this household's, retention's) the entry was built after."""
    hours: dict[int, _Agg] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    used: float = 0.0
    counted: float = 0.0
    """When its rows were last counted (monotonic)."""


def _fold(target: dict[int, _Agg], k: int, lo: float, hi: float, total: float, n: float) -> None:
    got = target.get(k)
    if got is None:
        target[k] = [lo, hi, total, n]
    else:
        got[0], got[1], got[2], got[3] = min(got[0], lo), max(got[1], hi), got[2] + total, got[3] + n


class HourCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        """Guards the table of entries; each sensor's own lock guards its entry while it is brought up to date."""
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._sensor_locks: dict[_Key, threading.Lock] = {}
        self._recent_erasure: dict[str, float] = {}
        """Households whose erasure this process saw recorded, and when (monotonic)."""
        self.rebuilds = 0
        """How many entries were built from the raw rows (tests and the benchmark read it)."""

    def downsample(
        self,
        engine: Engine,
        household_id: str,
        device_id: str,
        quantity: str,
        *,
        since: float,
        until: float,
        buckets: int,
    ) -> Buckets:
        """As :func:`cloud_sync.register.series.downsample`, from hourly aggregates when buckets are wide."""
        if (
            not (math.isfinite(since) and math.isfinite(until))
            or until <= since
            or until - since > MAX_SPAN_S
            or not MIN_BUCKETS <= buckets <= MAX_BUCKETS
            or (until - since) / buckets < MIN_BUCKET_S
        ):
            return downsample(engine, household_id, device_id, quantity, since=since, until=until, buckets=buckets)
        h0, h1 = math.ceil(since / HOUR), math.floor(until / HOUR)
        key = (household_id, device_id, quantity)
        r = db.readings.c
        sensor = (r.household_id == household_id) & (r.device_id == device_id) & (r.quantity == quantity)
        with self._lock:
            lock = self._sensor_locks.setdefault(key, threading.Lock())
            entry = self._entries.get(key)
        with lock:
            # One snapshot for the count, the fold and a rebuild (PostgreSQL: repeatable read; SQLite: one read
            # transaction), so none of them sees a row the others do not.
            with snapshot(engine) as conn:
                now = time.monotonic()
                packed = chunks.available(conn)
                generation = _generation(conn, household_id)
                if entry is not None and entry.generation != generation:
                    self._recent_erasure[household_id] = now
                    entry = None
                if entry is not None and entry.first_hour > h0:
                    entry = None
                if entry is not None:
                    self._fold_new(conn, entry, household_id, device_id, quantity, packed)
                    erased_at = self._recent_erasure.get(household_id)
                    recent = erased_at is not None and now - erased_at < GRACE_S
                    if recent or now - entry.counted >= COUNT_EVERY_S:
                        expected = conn.execute(
                            select(func.count()).where(sensor, r.ts >= h0 * HOUR, r.ts < h1 * HOUR)
                        ).scalar_one()
                        if packed:
                            expected += sum(
                                int(row[4])
                                for row in conn.execute(
                                    chunk_groups(
                                        household_id, device_id, quantity, None, since=h0 * HOUR, until=h1 * HOUR
                                    )
                                )
                            )
                        if sum(a[3] for h, a in entry.hours.items() if h0 <= h < h1) != expected:
                            entry = None
                        else:
                            entry.counted = now
                if entry is None:
                    entry = self._build(conn, household_id, device_id, quantity, h0, generation, packed)
                    entry.counted = now
                    self.rebuilds += 1
                # Two range queries (an OR of two ranges would not use the index as a range).
                edges = [
                    *conn.execute(select(r.ts, r.value).where(sensor, r.ts >= since, r.ts < h0 * HOUR)).all(),
                    *conn.execute(select(r.ts, r.value).where(sensor, r.ts >= h1 * HOUR, r.ts < until)).all(),
                ]
                if packed:
                    edges += _chunk_points(conn, household_id, device_id, quantity, since, h0 * HOUR)
                    edges += _chunk_points(conn, household_id, device_id, quantity, h1 * HOUR, until)
            scale = buckets / (until - since)
            merged = _buckets(entry.hours, h0, h1, since, scale, buckets)
        with self._lock:
            entry.used = now
            self._entries[key] = entry
            self._entries.move_to_end(key)
            for k in [k for k, e in self._entries.items() if now - e.used > IDLE_S]:
                del self._entries[k]
                self._sensor_locks.pop(k, None)
            for hh in [hh for hh, at in self._recent_erasure.items() if now - at >= GRACE_S]:
                del self._recent_erasure[hh]
            while len(self._entries) > MAX_SENSORS:
                k, _ = self._entries.popitem(last=False)
                self._sensor_locks.pop(k, None)
        for ts, value in edges:
            _fold(merged, min(max(int((ts - since) * scale), 0), buckets - 1), value, value, value, 1)
        keys = sorted(merged)
        width = (until - since) / buckets
        return Buckets(
            since=since,
            until=until,
            width=width,
            t=[since + k * width for k in keys],
            lo=[merged[k][0] for k in keys],
            hi=[merged[k][1] for k in keys],
            mean=[min(max(merged[k][2] / merged[k][3], merged[k][0]), merged[k][1]) for k in keys],
            count=[int(merged[k][3]) for k in keys],
        )

    def _build(
        self,
        conn: Connection,
        household_id: str,
        device_id: str,
        quantity: str,
        h0: int,
        generation: tuple[int, int],
        packed: bool,
    ) -> _Entry:
        r = db.readings.c
        sensor = (r.household_id == household_id) & (r.device_id == device_id) & (r.quantity == quantity)
        entry = _Entry(first_hour=h0, generation=generation, watermarks=_hub_watermarks(conn, household_id, packed))
        hour = _hour_expr(conn)
        rows = conn.execute(
            select(hour, func.min(r.value), func.max(r.value), func.sum(r.value), func.count())
            .where(sensor, r.ts >= h0 * HOUR)
            .group_by(hour)
        ).all()
        if packed:
            rows = [
                *rows,
                *conn.execute(chunk_groups(household_id, device_id, quantity, _hour_of, since=h0 * HOUR, until=None)),
            ]
        for h, lo, hi, total, n in rows:
            _fold(entry.hours, int(h), float(lo), float(hi), float(total), float(n))
        return entry

    def _fold_new(
        self, conn: Connection, entry: _Entry, household_id: str, device_id: str, quantity: str, packed: bool
    ) -> None:
        """Rows delivered since the entry was last brought up to date: the primary key's range per hub (and with
        ``packed``, the readings of the hub's chunks reaching past the watermark, by ``(hub_id, seq_last)``)."""
        r = db.readings.c
        current = _hub_watermarks(conn, household_id, packed)
        for hub_id, top in current.items():
            after = entry.watermarks.get(hub_id, -1)
            if top <= after:
                continue
            rows = conn.execute(
                select(r.ts, r.value).where(
                    r.hub_id == hub_id,
                    r.seq > after,
                    r.seq <= top,
                    r.household_id == household_id,
                    r.device_id == device_id,
                    r.quantity == quantity,
                    r.ts >= entry.first_hour * HOUR,
                )
            ).all()
            if packed:
                rows = [*rows, *_chunk_points_after(conn, hub_id, after, top, household_id, device_id, quantity, entry)]
            for ts, value in rows:
                _fold(entry.hours, int(ts // HOUR), value, value, value, 1)
            entry.watermarks[hub_id] = top


def _buckets(hours: dict[int, _Agg], h0: int, h1: int, since: float, scale: float, buckets: int) -> dict[int, _Agg]:
    """The hours ``h0 <= h < h1`` merged into the buckets they start in (a hot loop: six months is 4 392 hours)."""
    merged: dict[int, _Agg] = {}
    top = buckets - 1
    for h, a in hours.items():
        if h < h0 or h >= h1:
            continue
        k = int((h * HOUR - since) * scale)
        k = 0 if k < 0 else top if k > top else k
        m = merged.get(k)
        if m is None:
            merged[k] = a.copy()
        else:
            if a[0] < m[0]:
                m[0] = a[0]
            if a[1] > m[1]:
                m[1] = a[1]
            m[2] += a[2]
            m[3] += a[3]
    return merged


def _generation(conn: Connection, household_id: str) -> tuple[int, int]:
    a = db.audit.c
    mine = conn.execute(
        select(func.max(a.id)).where(a.household_id == household_id, a.action.in_(DELETING_ACTIONS))
    ).scalar()
    purge = conn.execute(select(func.max(a.id)).where(a.household_id.is_(None), a.action == "retention.purge")).scalar()
    return (int(mine or 0), int(purge or 0))


def _hub_watermarks(conn: Connection, household_id: str, packed: bool) -> dict[str, int]:
    """The highest reading seq of each of the household's hubs (one primary-key probe each; with ``packed``, one
    probe of the chunks' ``(hub_id, seq_last)`` too)."""
    hubs = conn.execute(select(db.hubs.c.id).where(db.hubs.c.household_id == household_id)).scalars().all()
    c = chunks.reading_chunks.c
    out: dict[str, int] = {}
    for hub_id in hubs:
        top = conn.execute(select(func.max(db.readings.c.seq)).where(db.readings.c.hub_id == hub_id)).scalar()
        if packed:
            chunked = conn.execute(select(func.max(c.seq_last)).where(c.hub_id == hub_id)).scalar()
            if chunked is not None and (top is None or chunked > top):
                top = chunked
        out[hub_id] = -1 if top is None else int(top)
    return out


def _chunk_points(
    conn: Connection, household_id: str, device_id: str, quantity: str, lo: float, hi: float
) -> list[Any]:
    """``(ts, value)`` of the sensor's readings held in chunks with ``lo <= ts < hi`` (an edge of the span)."""
    c = chunks.reading_chunks.c
    u = chunks.unnested(
        c.household_id == household_id,
        c.device_id == device_id,
        c.quantity == quantity,
        c.ts_first >= lo - chunks.MAX_SPAN_S,
        c.ts_first < hi,
        c.ts_last >= lo,
    ).subquery("chunked")
    return [*conn.execute(select(u.c.ts, u.c.value).where(u.c.ts >= lo, u.c.ts < hi))]


def _chunk_points_after(
    conn: Connection,
    hub_id: str,
    after: int,
    top: int,
    household_id: str,
    device_id: str,
    quantity: str,
    entry: _Entry,
) -> list[Any]:
    """``(ts, value)`` of the sensor's readings held in the hub's chunks with ``after < seq <= top``, from the
    entry's first hour on: the chunks reaching past the watermark (``seq_last > after``, by that index)."""
    c = chunks.reading_chunks.c
    start = entry.first_hour * HOUR
    u = chunks.unnested(
        c.hub_id == hub_id,
        c.seq_last > after,
        c.seq_first <= top,
        c.household_id == household_id,
        c.device_id == device_id,
        c.quantity == quantity,
        c.ts_last >= start,
        c.ts_first >= start - chunks.MAX_SPAN_S,
    ).subquery("chunked")
    return [*conn.execute(select(u.c.ts, u.c.value).where(u.c.seq > after, u.c.seq <= top, u.c.ts >= start))]


def _hour_of(ts: Any) -> ColumnElement[Any]:
    """A chunked reading's hour for :func:`chunk_groups`: as :func:`_hour_expr` on PostgreSQL, before its cast."""
    return func.floor(ts / HOUR)


def _hour_expr(conn: Connection) -> ColumnElement[int]:
    r = db.readings.c
    # As in series.downsample: PostgreSQL's cast rounds, SQLite's truncates (ts is never negative).
    if conn.dialect.name == "postgresql":
        return cast(func.floor(r.ts / HOUR), Integer).label("h")
    return cast(r.ts / HOUR, Integer).label("h")
