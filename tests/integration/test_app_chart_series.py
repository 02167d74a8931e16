"""Charts of the household's app: the SQL downsampler on both databases, and the six-month chart's data size.

The browser round trip (the page drawing six months with uPlot) is in ``test_app_charts_browser.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from sqlalchemy import Engine, event, text

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


def _sensor_rows(household: str, hub: str, sensors: list[tuple[str, str, float]], n: int) -> list[dict[str, object]]:
    """``n`` readings of each ``(device, quantity, newest ts)``, one a minute up to that time."""
    return [
        {"hub_id": hub, "seq": k * n + i, "household_id": household, "device_id": dev, "quantity": q,
         "value": float(i), "ts": newest - (n - 1 - i) * 60.0, "received_at": newest, "channel": ""}
        for k, (dev, q, newest) in enumerate(sensors)
        for i in range(n)
    ]  # fmt: skip


def test_the_sensor_list_is_found_by_seeks_on_both_databases(tmp_path: Path, postgres_url: str) -> None:
    now = T0 + 100 * DAY
    mine = [
        ("d-kitchen", "temperature", now - 60),
        ("d-kitchen", "humidity", now - 120),
        ("d-hall", "temperature", now - 40 * DAY),  # silent since before the list's span
        ("d-new", "pm25", now - 5),  # not in the device list
        ("d-attic", "temperature", now - 3600),
    ]
    rows = _sensor_rows(HH, "hub_c", mine, 2000) + _sensor_rows("hh_other", "hub_o", [("d-x", "co2", now)], 2000)
    lite, pg = db.open_engine(f"sqlite:///{tmp_path / 'r.db'}"), db.open_engine(postgres_url)
    try:
        for engine in (lite, pg):
            _fill(engine, rows)
            with engine.begin() as conn:
                conn.execute(db.households.insert(), [{"id": HH, "name": "x", "created_at": T0}])
                conn.execute(
                    db.devices.insert(),
                    [
                        {"household_id": HH, "device_id": d, "hub_id": "hub_c", "kind": "sensor", "name": name,
                         "model": "", "room": room, "updated_at": T0}
                        for d, name, room in (("d-kitchen", "Lämpö", "Keittiö"), ("d-hall", "Aula", "Aula"),
                                              ("d-attic", "Ullakko", "Ullakko"))
                    ],
                )  # fmt: skip
            listed = series.sensors(engine, HH, since=now - 7 * DAY)
            assert [(s["device_id"], s["quantity"], s["last"], s["room"]) for s in listed] == [
                ("d-kitchen", "humidity", now - 120, "Keittiö"),
                ("d-kitchen", "temperature", now - 60, "Keittiö"),
                ("d-attic", "temperature", now - 3600, "Ullakko"),
                ("d-new", "pm25", now - 5, ""),
            ]
            assert len(series.sensors(engine, HH, since=now - 183 * DAY)) == 5
            assert series.sensors(engine, "hh_nobody", since=0.0) == []
        with pg.connect() as conn:
            conn.exec_driver_sql("ANALYZE readings")
            explain = text("EXPLAIN " + series._SENSORS.text)
            plan = "\n".join(str(r[0]) for r in conn.execute(explain, {"h": HH, "since": now - 7 * DAY}))
        # Every probe is an index seek (the partitions' copies of readings_sensor_ts), never a scan of the readings.
        assert "Seq Scan" not in plan and "Index Only Scan" in plan, plan
    finally:
        lite.dispose()
        pg.dispose()
