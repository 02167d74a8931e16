"""The charts' hourly cache (cloud_sync.register.series_cache) against the raw SQL downsampler, on SQLite and
PostgreSQL: the same readings counted, the same overall min and max, every bucket's min <= mean <= max; new and
late rows folded in without a rebuild; an erasure (recorded in the audit) rebuilds at once, a deletion nobody
recorded is found by the periodic count."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert

from cloud_sync.register import db, series, series_cache
from cloud_sync.register.registry import write_audit
from cloud_sync.register.series_cache import HourCache

HH, DEV, Q, HUB = "hh_cache", "zigbee:0xcafe", "temperature", "hub_cache"
DAY = 86_400.0


def _rows(start: float, n: int, step: float, first_seq: int, rng: random.Random) -> list[dict[str, object]]:
    return [
        {
            "hub_id": HUB,
            "seq": first_seq + i,
            "household_id": HH,
            "device_id": DEV,
            "quantity": Q,
            "value": round(15 + 10 * rng.random(), 2),
            "ts": start + i * step,
            "received_at": time.time(),
        }
        for i in range(n)
    ]


def _check(cache: HourCache, engine: Engine, since: float, until: float, buckets: int) -> series.Buckets:
    got = cache.downsample(engine, HH, DEV, Q, since=since, until=until, buckets=buckets)
    raw = series.downsample(engine, HH, DEV, Q, since=since, until=until, buckets=buckets)
    assert got.points == raw.points
    assert min(got.lo) == min(raw.lo) and max(got.hi) == max(raw.hi)
    assert (
        abs(
            sum(m * c for m, c in zip(got.mean, got.count, strict=True))
            - sum(m * c for m, c in zip(raw.mean, raw.count, strict=True))
        )
        < 1e-6 * raw.points * 25
    )
    for lo, mean, hi in zip(got.lo, got.mean, got.hi, strict=True):
        assert lo <= mean <= hi
    assert len(got.t) <= buckets
    return got


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_cache_answers_as_the_raw_rows_do(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
    engine = db.open_engine(url)
    rng = random.Random(7)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(insert(db.households).values(id=HH, name="c", created_at=now))
        conn.execute(insert(db.hubs).values(id=HUB, household_id=HH, cert_sha256="0" * 64, enrolled_at=now))
    start = now - 120 * DAY
    n = int(120 * DAY // 600)
    with engine.begin() as conn:
        db.insert_many_ignore(conn, db.readings, _rows(start, n, 600.0, 0, rng))
    cache = HourCache()
    since, until = now - 120 * DAY + 1234.5, now - 17.25
    try:
        _check(cache, engine, since, until, 300)
        assert cache.rebuilds == 1
        _check(cache, engine, since, until, 300)
        assert cache.rebuilds == 1, "an unchanged sensor is answered from the cache"

        # New rows, and late ones from weeks ago (a hub back online): folded in, no rebuild.
        with engine.begin() as conn:
            db.insert_many_ignore(conn, db.readings, _rows(now - 30 * DAY + 7, 50, 60.0, n, rng))
        _check(cache, engine, since, until + 1, 300)
        assert cache.rebuilds == 1

        # An erasure of some rows, recorded as every erasure is: the entry is rebuilt, the erased values are gone.
        with engine.begin() as conn:
            conn.execute(delete(db.readings).where(db.readings.c.ts < now - 60 * DAY))
            write_audit(conn, "member:m_1", "household.erase", HH, "device")
        got = _check(cache, engine, since, until + 2, 300)
        assert cache.rebuilds == 2
        assert got.t[0] >= now - 60 * DAY - got.width

        # A deletion nobody recorded: the periodic count finds it (here at once).
        with engine.begin() as conn:
            conn.execute(delete(db.readings).where(db.readings.c.ts < now - 50 * DAY))
        monkeypatch.setattr(series_cache, "COUNT_EVERY_S", 0.0)
        got = _check(cache, engine, since, until + 3, 300)
        assert cache.rebuilds == 3
        assert got.t[0] >= now - 50 * DAY - got.width

        # Narrow buckets (a day) are never served from hours.
        _check(cache, engine, now - DAY, now, 500)
        assert cache.rebuilds == 3
    finally:
        engine.dispose()
