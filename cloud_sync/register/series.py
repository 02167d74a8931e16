"""One sensor's readings over a span, downsampled in SQL for a chart: min, max, mean and count per time bucket.

A chart is a few hundred pixels wide, so six months of a sensor reading every minute (260 000 rows) is drawn from
at most :data:`MAX_BUCKETS` buckets. The database does the grouping in one range query on the index
``readings_sensor_ts`` (cloud_sync/register/db.py), which covers the value too, so the rows themselves are never
read, and only the buckets cross the wire. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, Integer, cast, func, select, text

from cloud_sync.register import db
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
    with engine.connect() as conn:
        rows = conn.execute(q).all()
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
    with engine.connect() as conn:
        found = conn.execute(_SENSORS, {"h": household_id, "since": since}).all()
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
        return conn.execute(q).first() is not None
