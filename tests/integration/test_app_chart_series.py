"""Charts of the household's app: the SQL downsampler on both databases, and the six-month chart's data size.

The browser round trip (the page drawing six months with uPlot) is in ``test_app_charts_browser.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from sqlalchemy import Engine, event

from cloud_sync.register import db, series

HH, DEV, Q = "hh_chart", "zigbee:0xabc", "temperature"
DAY = 86_400.0
T0 = 1_750_000_000.0


def six_months(step_s: float = 300.0, seed: int = 18) -> list[dict[str, object]]:
    rng = random.Random(seed)
    n = int(183 * DAY / step_s)
    return [
        {
            "hub_id": "hub_c",
            "seq": i,
            "household_id": HH,
            "device_id": DEV,
            "quantity": Q,
            "value": round(20 + 5 * rng.random(), 2),
            "ts": T0 + i * step_s,
            "received_at": T0 + i * step_s,
        }
        for i in range(n)
    ]


def _fill(engine: Engine, rows: list[dict[str, object]]) -> None:
    with engine.begin() as conn:
        for i in range(0, len(rows), 10_000):
            db.insert_many_ignore(conn, db.readings, rows[i : i + 10_000])


def test_sqlite_and_postgresql_agree(tmp_path: Path, postgres_url: str) -> None:
    rows = six_months()
    lite, pg = db.open_engine(f"sqlite:///{tmp_path / 'r.db'}"), db.open_engine(postgres_url)
    try:
        for engine in (lite, pg):
            _fill(engine, rows)
        until = T0 + 183 * DAY
        a = series.downsample(lite, HH, DEV, Q, since=T0, until=until, buckets=600)
        b = series.downsample(pg, HH, DEV, Q, since=T0, until=until, buckets=600)
        assert a.points == b.points == len(rows)
        assert a.t == b.t and a.count == b.count and a.lo == b.lo and a.hi == b.hi
        assert all(abs(x - y) < 1e-9 for x, y in zip(a.mean, b.mean, strict=True))
        # A day, with a bucket boundary falling exactly on readings (300 s readings, 144 s buckets): none lost.
        day = series.downsample(pg, HH, DEV, Q, since=T0, until=T0 + DAY, buckets=600)
        assert day.points == 288
    finally:
        lite.dispose()
        pg.dispose()


def test_six_months_is_one_query_and_small(tmp_path: Path) -> None:
    rows = six_months(step_s=120.0)  # a reading every two minutes: 131 760 rows
    engine = db.open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    statements: list[str] = []
    try:
        _fill(engine, rows)
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        out = series.downsample(engine, HH, DEV, Q, since=T0, until=T0 + 183 * DAY, buckets=series.bucket_count(3000))
        assert out.points == len(rows)
        assert len([s for s in statements if "FROM readings" in s]) == 1
        assert len(msgspec.json.encode(out.as_json())) < 200 * 1024
        with engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT min(value) FROM readings WHERE household_id=? AND device_id=? "
                    "AND quantity=? AND ts>=? AND ts<?",
                    (HH, DEV, Q, T0, T0 + DAY),
                )
            )
        assert "COVERING INDEX readings_sensor_ts" in plan
    finally:
        engine.dispose()
