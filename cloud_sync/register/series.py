"""One sensor's readings over a span, downsampled in SQL for a chart: min, max, mean and count per time bucket.

A chart is a few hundred pixels wide, so six months of a sensor reading every minute (260 000 rows) is drawn from
at most :data:`MAX_BUCKETS` buckets. The database does the grouping in one range query on the index
``readings_sensor_ts`` (cloud_sync/register/db.py), which covers the value too, so the rows themselves are never
read, and only the buckets cross the wire. Works the same on SQLite and PostgreSQL.

On PostgreSQL readings may also be stored in packed chunks (cloud_sync/register/chunks.py). Every reader here then
runs its query on ``readings`` unchanged and a second one on ``reading_chunks``, both in one snapshot, and merges
the two in Python: a reading is in exactly one of the tables, so the merge is what the query would give if all were
rows. A chunk wholly inside one bucket is read from its own least, greatest, sum and count without unnesting it
(:func:`chunk_groups`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Engine,
    Integer,
    and_,
    cast,
    func,
    literal,
    not_,
    select,
    text,
    union_all,
)

from cloud_sync.register import chunks, db
from cloud_sync.register.errors import Invalid

MAX_BUCKETS: Final = 1500
MIN_BUCKETS: Final = 10
MAX_SPAN_S: Final = 400 * 86_400
"""A chart covers at most this (the retention period is six months; a little more is harmless)."""


@dataclass(frozen=True)
class Buckets:
    """Columns of equal length, one entry per non-empty bucket, in time order; ``t`` is each bucket's start."""

    since: float
    until: float
    width: float
    t: list[float]
    lo: list[float]
    hi: list[float]
    mean: list[float]
    count: list[int]

    @property
    def points(self) -> int:
        return sum(self.count)

    def as_json(self, digits: int = 3) -> dict[str, Any]:
        """Compact columns for the page. Rounding is monotonic, so ``min <= mean <= max`` survives it."""
        return {
            "since": self.since,
            "until": self.until,
            "width": self.width,
            "t": [round(x, 1) for x in self.t],
            "min": [round(x, digits) for x in self.lo],
            "max": [round(x, digits) for x in self.hi],
            "mean": [round(x, digits) for x in self.mean],
            "count": self.count,
        }


def bucket_count(width_px: int) -> int:
    """Buckets for a chart ``width_px`` wide: about one per two pixels, within the bounds."""
    return max(MIN_BUCKETS, min(MAX_BUCKETS, width_px // 2))


def downsample(
    engine: Engine, household_id: str, device_id: str, quantity: str, *, since: float, until: float, buckets: int
) -> Buckets:
    """Readings of one sensor with ``since <= ts < until`` in ``buckets`` equal time buckets (empty ones left out).

    Every reading in the span lands in exactly one bucket: the bucket number is computed in SQL from the
    timestamp, and the last bucket also takes the odd reading that floating-point rounding would put one past it.
    """
    if not (math.isfinite(since) and math.isfinite(until)) or until <= since:
        raise Invalid("the span must have until after since", code="bad_span")
    if until - since > MAX_SPAN_S:
        raise Invalid(f"a chart spans at most {MAX_SPAN_S // 86_400} days", code="bad_span")
    if not MIN_BUCKETS <= buckets <= MAX_BUCKETS:
        raise Invalid(f"buckets must be between {MIN_BUCKETS} and {MAX_BUCKETS}", code="bad_buckets")
    r = db.readings.c
    scale = buckets / (until - since)
    offset = (r.ts - since) * scale
    # Both dialects: PostgreSQL's cast rounds, SQLite's truncates (and SQLite may lack floor()); the offset is
    # never negative, so truncation is floor.
    index = func.floor(offset) if engine.dialect.name == "postgresql" else cast(offset, Integer)
    bucket = cast(index, Integer).label("b")
    q = (
        select(bucket, func.min(r.value), func.max(r.value), func.sum(r.value), func.count())
        .where(
            r.household_id == household_id,
            r.device_id == device_id,
            r.quantity == quantity,
            r.ts >= since,
            r.ts < until,
        )
        .group_by(bucket)
        .order_by(bucket)
    )
    with _reading(engine) as (conn, packed):
        rows: list[Any] = [*conn.execute(q)]
        if packed:
            # The same bucket number, on PostgreSQL's floor of the same float expression, as the rows' above.
            key = _bucket_key(since, scale)
            rows += conn.execute(chunk_groups(household_id, device_id, quantity, key, since=since, until=until)).all()
    merged: dict[int, list[float]] = {}
    for b, lo, hi, total, n in rows:
        k = min(max(int(b), 0), buckets - 1)
        got = merged.get(k)
        if got is None:
            merged[k] = [float(lo), float(hi), float(total), float(n)]
        else:
            got[0], got[1], got[2], got[3] = min(got[0], lo), max(got[1], hi), got[2] + total, got[3] + n
    width = (until - since) / buckets
    keys = sorted(merged)
    lo_, hi_ = [merged[k][0] for k in keys], [merged[k][1] for k in keys]
    # A float mean can stray past min or max by an ulp (e.g. three equal values); clamp so the chart's band holds.
    mean = [min(max(merged[k][2] / merged[k][3], merged[k][0]), merged[k][1]) for k in keys]
    return Buckets(
        since=since,
        until=until,
        width=width,
        t=[since + k * width for k in keys],
        lo=lo_,
        hi=hi_,
        mean=mean,
        count=[int(merged[k][3]) for k in keys],
    )


# The household's distinct (device, quantity) pairs by skipping through ``readings_sensor_ts`` (household, device,
# quantity, ts, value): each step one seek to the next pair, so a household's sensors cost a seek each rather than a
# scan of its readings (PostgreSQL has no skip scan of its own before 18); then each one's newest time since the
# span's start, one backward seek each (on PostgreSQL only into the weeks the span reaches). Row values and
# recursive CTEs: PostgreSQL and SQLite alike.
_SENSORS = text(
    """
WITH RECURSIVE s(device_id, quantity) AS (
    SELECT device_id, quantity FROM (
        SELECT device_id, quantity FROM readings WHERE household_id = :h ORDER BY device_id, quantity LIMIT 1
    ) AS first
    UNION ALL
    SELECT
        (SELECT r.device_id FROM readings r WHERE r.household_id = :h
            AND (r.device_id, r.quantity) > (s.device_id, s.quantity) ORDER BY r.device_id, r.quantity LIMIT 1),
        (SELECT r.quantity FROM readings r WHERE r.household_id = :h
            AND (r.device_id, r.quantity) > (s.device_id, s.quantity) ORDER BY r.device_id, r.quantity LIMIT 1)
    FROM s WHERE s.device_id IS NOT NULL
)
SELECT s.device_id, s.quantity, (
    SELECT max(r.ts) FROM readings r
    WHERE r.household_id = :h AND r.device_id = s.device_id AND r.quantity = s.quantity AND r.ts >= :since
) AS last
FROM s WHERE s.device_id IS NOT NULL
"""
)


def sensors(engine: Engine, household_id: str, *, since: float) -> list[dict[str, Any]]:
    """The household's sensors (device and quantity) that reported since ``since``, with the device's name and
    room, for the chart page's list: named devices by room and name, then those not in the device list."""
    d = db.devices.c
    with _reading(engine) as (conn, packed):
        found: list[Any] = [*conn.execute(_SENSORS, {"h": household_id, "since": since})]
        if packed:
            found = _with_chunked_sensors(conn, found, household_id, since)
        names = {
            row.device_id: (row.name, row.room)
            for row in conn.execute(select(d.device_id, d.name, d.room).where(d.household_id == household_id))
        }
    out = [
        {
            "device_id": device_id,
            "quantity": quantity,
            "last": float(last),
            "name": names.get(device_id, ("", ""))[0] or "",
            "room": names.get(device_id, ("", ""))[1] or "",
        }
        for device_id, quantity, last in found
        if last is not None
    ]
    out.sort(key=lambda x: (x["device_id"] not in names, x["room"], x["name"], x["device_id"], x["quantity"]))
    return out


def has_sensor(engine: Engine, household_id: str, device_id: str, quantity: str) -> bool:
    """Whether the household has any reading of this sensor (one index probe)."""
    r = db.readings.c
    q = select(r.ts).where(r.household_id == household_id, r.device_id == device_id, r.quantity == quantity).limit(1)
    with engine.connect() as conn:
        if conn.execute(q).first() is not None:
            return True
        if not chunks.available(conn):
            return False
        c = chunks.reading_chunks.c
        chunked = select(c.ts_first).where(
            c.household_id == household_id, c.device_id == device_id, c.quantity == quantity
        )
        return conn.execute(chunked.limit(1)).first() is not None


def _with_chunked_sensors(conn: Connection, found: list[Any], household_id: str, since: float) -> list[Any]:
    """The rows' sensors ``(device, quantity, newest ts since since or None)`` with the chunks' merged in: a plain
    query of the household's chunks by the chart index (a household has few chunks; none older than ``since`` less
    a chunk's longest span can reach the span)."""
    c = chunks.reading_chunks.c
    q = (
        select(c.device_id, c.quantity, func.max(c.ts_last))
        .where(c.household_id == household_id, c.ts_first >= since - chunks.MAX_SPAN_S, c.ts_last >= since)
        .group_by(c.device_id, c.quantity)
    )
    out: dict[tuple[str, str], Any] = {(device_id, quantity): last for device_id, quantity, last in found}
    for device_id, quantity, last in conn.execute(q):
        got = out.get((device_id, quantity))
        out[(device_id, quantity)] = last if got is None else max(got, last)
    return [(device_id, quantity, last) for (device_id, quantity), last in out.items()]


def _bucket_key(since: float, scale: float) -> Callable[[Any], ColumnElement[Any]]:
    return lambda ts: func.floor((ts - since) * scale)


def chunk_groups(
    household_id: str,
    device_id: str,
    quantity: str,
    key: Callable[[Any], ColumnElement[Any]] | None,
    *,
    since: float,
    until: float | None,
) -> CompoundSelect[Any]:
    """``(group, min, max, sum, count)`` of one sensor's readings held in chunks with ``since <= ts < until``
    (``until`` None: no end), grouped by ``key(ts)`` (PostgreSQL only; ``key`` None: one group, numbered 0).

    ``key`` must not decrease as ``ts`` grows (a floor of a scaled time), so a chunk within the span whose first and
    last times have the same key has all its readings in that group: such chunks are counted from their ``vmin``,
    ``vmax``, ``vsum`` and ``n``; only the others are unnested. The key is compared and returned as PostgreSQL
    computes it, a float (no integer cast to overflow on a chunk outside the span); a group may come once from each
    kind of chunk, so the caller merges groups with the same key."""
    c = chunks.reading_chunks.c
    near: list[ColumnElement[bool]] = [
        c.household_id == household_id,
        c.device_id == device_id,
        c.quantity == quantity,
        c.ts_first >= since - chunks.MAX_SPAN_S,
        c.ts_last >= since,
    ]
    inside: list[ColumnElement[bool]] = [c.ts_first >= since]
    if until is not None:
        near.append(c.ts_first < until)
        inside.append(c.ts_last < until)
    if key is not None:
        inside.append(key(c.ts_first) == key(c.ts_last))
    # Each key built once and used for both its column and its GROUP BY: built twice, its numbers would be two bound
    # parameters, and PostgreSQL would not see the grouped expression as the selected one.
    key_whole = literal(0) if key is None else key(c.ts_first)
    whole = select(key_whole.label("k"), func.min(c.vmin), func.max(c.vmax), func.sum(c.vsum), func.sum(c.n)).where(
        *near, *inside
    )
    u = chunks.unnested(*near, not_(and_(*inside))).subquery("chunked")
    key_part = literal(0) if key is None else key(u.c.ts)
    part = select(
        key_part.label("k"), func.min(u.c.value), func.max(u.c.value), func.sum(u.c.value), func.count()
    ).where(u.c.ts >= since, *([] if until is None else [u.c.ts < until]))
    if key is None:
        # One group: no GROUP BY, and no row at all rather than one of NULLs when nothing matched.
        whole, part = whole.having(func.count() > 0), part.having(func.count() > 0)
    else:
        whole, part = whole.group_by(key_whole), part.group_by(key_part)
    return union_all(whole, part)


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one snapshot (PostgreSQL: repeatable read; SQLite: one read transaction), so
    that a reader's several queries — of rows and of chunks, or a count and a fold — see the same readings."""
    conn = engine.connect()
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.begin()
        if conn.dialect.name == "sqlite":
            # pysqlite starts no transaction for reads by itself: without one each SELECT has its own snapshot.
            conn.exec_driver_sql("BEGIN")
        yield conn
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def _reading(engine: Engine) -> Iterator[tuple[Connection, bool]]:
    """A connection for a reader in one :func:`snapshot`, and whether the database has chunks."""
    with snapshot(engine) as conn:
        yield conn, chunks.available(conn)
