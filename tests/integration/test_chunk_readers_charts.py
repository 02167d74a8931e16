"""The charts' readers on PostgreSQL with readings packed in chunks (cloud_sync/register/chunks.py): one set of
readings stored all as rows in one household and mostly as chunks in another gives the same buckets
(series.downsample), the same sensor list and presence (series.sensors, series.has_sensor) and the same cached
charts (series_cache.HourCache), also after more readings arrive as chunks only and as chunks and rows."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from sqlalchemy import insert, update

from cloud_sync import protocol as p
from cloud_sync.register import chunks, db, series, series_cache
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.registry import Registry
from cloud_sync.register.series_cache import HourCache
from tests.support.register import hub_row, store_as_chunks, store_as_rows

DAY = 86_400.0
NOW = time.time()
T0 = NOW - 6 * DAY
BURST = T0 + 2.5 * DAY + 0.3
"""Seven readings of one sensor within ten seconds: one chunk, inside a single bucket of any chart but a tiny one."""

_Reading = tuple[str, str, str, float]  # device, quantity, channel, ts


def _readings() -> list[_Reading]:
    out: list[_Reading] = []
    out += [("d-kitchen", "temperature", "", T0 + i * 1200.0) for i in range(360)]  # five days: several chunks
    out += [("d-kitchen", "temperature", "2", NOW - 600.0 - i * 900.0) for i in range(3)]  # rows, newer than chunks
    out += [("d-kitchen", "humidity", "", T0 + 3600.0 * i) for i in range(4)]  # rows only
    out += [("d-hall", "co2", "", T0 + 3 * 3600.0 * i + 11.0) for i in range(40)]  # a chunk a day
    out += [("d-hall", "co2", "2", T0 + 60.0 * i) for i in range(2)]  # rows, older than the chunks
    out += [("d-burst", "pm25", "", BURST + 1.4 * i) for i in range(7)]
    out += [("d-old", "temperature", "", NOW - 30 * DAY + 300.0 * i) for i in range(6)]
    out += [("d-late", "temperature", "", NOW - 3600.0 + 60.0 * i) for i in range(5)]
    return out


SENSORS = sorted({(d, q) for d, q, _, _ in _readings()})


def _items(readings: list[_Reading], first_seq: int, seed: int) -> list[p.ReadingItem]:
    """The readings in time order (as a hub sends them), seqs from ``first_seq``, values from ``seed``."""
    rng = random.Random(seed)
    return [
        p.ReadingItem(
            seq=first_seq + i, ts=ts, body=p.ReadingBody(dev, q, round(rng.uniform(-5.0, 30.0), 3), ts, channel)
        )
        for i, (dev, q, channel, ts) in enumerate(sorted(readings, key=lambda r: r[3]))
    ]


@pytest.fixture
def reg(registry_pg_rows: Registry) -> Registry:
    """Chunk writing off, so that ``store_as_rows`` stores rows; ``store_as_chunks`` writes the chunks itself."""
    return registry_pg_rows


def _household(reg: Registry, name: str) -> HubIdentity:
    household = reg.create_household(name, actor="test")
    hub = HubIdentity(hub_id=f"hub-{household}", household_id=household)
    hub_row(reg, hub.hub_id, household, NOW)
    with reg.engine.begin() as conn:
        conn.execute(
            insert(db.devices),
            [
                {"household_id": household, "device_id": d, "hub_id": hub.hub_id, "kind": "sensor", "name": name,
                 "model": "", "room": room, "updated_at": NOW}
                for d, name, room in (("d-kitchen", "Lämpö", "Keittiö"), ("d-hall", "Ilma", "Aula"))
            ],
        )  # fmt: skip
    return hub


def _two(reg: Registry, items_seed: int = 5) -> tuple[HubIdentity, HubIdentity]:
    """Household A with every reading a row, B with the same readings mostly in chunks."""
    a, b = _household(reg, "rows"), _household(reg, "chunks")
    items = _items(_readings(), 0, items_seed)
    store_as_rows(reg, a, items)
    packed, rows = store_as_chunks(reg, b, items)
    by_sensor = {(c.device_id, c.quantity) for c in packed}
    assert {("d-kitchen", "temperature"), ("d-hall", "co2"), ("d-burst", "pm25")} <= by_sensor
    assert len([c for c in packed if c.device_id == "d-kitchen"]) >= 5, "five days in chunks of at most a day"
    # The rows: the sensors with few readings, and the hall's last four (nine to a day: a tail too short for a chunk).
    assert rows == 3 + 4 + 2 + 4
    return a, b


def _same(x: series.Buckets, y: series.Buckets) -> None:
    assert (x.t, x.count, x.lo, x.hi) == (y.t, y.count, y.lo, y.hi)
    # The sums are added in other orders (rows by PostgreSQL, a chunk's vsum by math.fsum).
    assert all(abs(m - n) <= 1e-9 * max(1.0, abs(m)) for m, n in zip(x.mean, y.mean, strict=True))


SPANS = [
    (T0 - 100.0, NOW + 100.0, 10),
    (T0 - 100.0, NOW + 100.0, 97),
    (T0 - 100.0, NOW + 100.0, 1500),
    (T0 + 1.3 * DAY + 17.7, T0 + 3.1 * DAY, 50),  # both ends inside chunks
    (BURST - 3.0, BURST + 20.0, 10),  # the burst's chunk across buckets
    (BURST + 2.0, BURST + 6.0, 10),  # ... and cut by the span
    (NOW - 40 * DAY, NOW, 400),
]


def test_downsample_is_the_same_from_chunks(reg: Registry) -> None:
    a, b = _two(reg)
    total = 0
    for dev, q in [*SENSORS, ("d-kitchen", "co2")]:
        for since, until, buckets in SPANS:
            x = series.downsample(reg.engine, a.household_id, dev, q, since=since, until=until, buckets=buckets)
            y = series.downsample(reg.engine, b.household_id, dev, q, since=since, until=until, buckets=buckets)
            _same(x, y)
            if until - since > 7 * DAY:
                total += y.points
    assert total == len(_readings())

    # A chunk wholly inside one bucket is read from its vmin, vmax, vsum and n; one across buckets from its arrays.
    with reg.engine.begin() as conn:
        c = chunks.reading_chunks.c
        done = conn.execute(
            update(chunks.reading_chunks)
            .where(c.household_id == b.household_id, c.device_id == "d-burst")
            .values(vmax=1e6, vsum=c.vsum + 1e6)
        )
        assert done.rowcount == 1
    wide = dict(since=T0, until=NOW, buckets=10)
    x = series.downsample(reg.engine, a.household_id, "d-burst", "pm25", **wide)  # type: ignore[arg-type]
    y = series.downsample(reg.engine, b.household_id, "d-burst", "pm25", **wide)  # type: ignore[arg-type]
    assert y.count == x.count == [7] and y.hi == [1e6] and y.lo == x.lo
    for since, until, buckets in SPANS[4:6]:
        x = series.downsample(reg.engine, a.household_id, "d-burst", "pm25", since=since, until=until, buckets=buckets)
        y = series.downsample(reg.engine, b.household_id, "d-burst", "pm25", since=since, until=until, buckets=buckets)
        assert len(y.count) > 1
        _same(x, y)


def _listed(reg: Registry, hub: HubIdentity, since: float) -> list[tuple[Any, ...]]:
    return [tuple(s.values()) for s in series.sensors(reg.engine, hub.household_id, since=since)]


def test_the_sensor_list_and_presence_are_the_same_from_chunks(reg: Registry) -> None:
    a, b = _two(reg)
    kitchen_rows = max(ts for d, q, ch, ts in _readings() if d == "d-kitchen" and ch == "2")
    hall_chunks = max(ts for d, _, ch, ts in _readings() if d == "d-hall" and ch == "")
    week = _listed(reg, b, NOW - 7 * DAY)
    assert week == _listed(reg, a, NOW - 7 * DAY)
    assert [s[:3] for s in week] == [
        ("d-hall", "co2", hall_chunks),  # newest in a chunk, older rows beside it
        ("d-kitchen", "humidity", T0 + 3 * 3600.0),
        ("d-kitchen", "temperature", kitchen_rows),  # newest in a row, older chunks beside it
        ("d-burst", "pm25", BURST + 6 * 1.4),
        ("d-late", "temperature", NOW - 3600.0 + 4 * 60.0),
    ]
    assert len(_listed(reg, b, NOW - 60 * DAY)) == len(SENSORS)
    for since in (NOW - 60 * DAY, T0 + 2.5 * DAY, BURST + 5.0, NOW - 2 * 3600.0, NOW - 700.0, NOW + 1.0):
        assert _listed(reg, b, since) == _listed(reg, a, since), since
    assert [s[:2] for s in _listed(reg, b, BURST + 5.0)] == [
        ("d-hall", "co2"),
        ("d-kitchen", "temperature"),
        ("d-burst", "pm25"),  # a chunk reaching past the list's start by its last readings only
        ("d-late", "temperature"),
    ]

    for dev, q in [*SENSORS, ("d-kitchen", "co2"), ("d-none", "temperature")]:
        expected = (dev, q) in SENSORS
        assert series.has_sensor(reg.engine, a.household_id, dev, q) is expected
        assert series.has_sensor(reg.engine, b.household_id, dev, q) is expected, (dev, q)
    # A sensor held in chunks only (no row of it at all).
    assert series.has_sensor(reg.engine, b.household_id, "d-burst", "pm25")


def test_the_chart_cache_is_the_same_from_chunks(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two(reg)
    ca, cb = HourCache(), HourCache()
    since = T0 + 1234.5
    charted = [("d-kitchen", "temperature"), ("d-hall", "co2"), ("d-burst", "pm25")]

    def check(until: float) -> None:
        for dev, q in charted:
            x = ca.downsample(reg.engine, a.household_id, dev, q, since=since, until=until, buckets=40)
            y = cb.downsample(reg.engine, b.household_id, dev, q, since=since, until=until, buckets=40)
            _same(x, y)
            raw = series.downsample(reg.engine, b.household_id, dev, q, since=since, until=until, buckets=40)
            assert y.points == raw.points > 0

    check(NOW - 1.5 * DAY + 17.25)  # the span's edges inside chunks
    assert ca.rebuilds == cb.rebuilds == len(charted)

    # More readings arrive, all of them in chunks in B (its rows' highest seq does not move), late ones too.
    more = _items(
        [("d-kitchen", "temperature", "", T0 + 2 * DAY + 420.0 * i + 1.0) for i in range(8)]
        + [("d-hall", "co2", "", NOW - 5 * 3600.0 + 600.0 * i) for i in range(6)],
        1000,
        6,
    )
    store_as_rows(reg, a, more)
    packed, rows = store_as_chunks(reg, b, more)
    assert len(packed) == 2 and rows == 0
    check(NOW - 1.5 * DAY + 17.25)
    check(NOW - 17.25)
    assert ca.rebuilds == cb.rebuilds == len(charted), "folded in, not rebuilt"

    # And some as chunks and rows; the count of every use (now) finds every reading where it is.
    monkeypatch.setattr(series_cache, "COUNT_EVERY_S", 0.0)
    mixed = _items(
        [("d-kitchen", "temperature", "", T0 + 3 * DAY + 300.0 * i + 2.0) for i in range(6)]
        + [("d-burst", "pm25", "", BURST + 3.0), ("d-hall", "co2", "", NOW - 3000.0)],
        2000,
        7,
    )
    store_as_rows(reg, a, mixed)
    packed, rows = store_as_chunks(reg, b, mixed)
    assert len(packed) == 1 and rows == 2
    check(NOW - 17.25)
    check(NOW + 3600.0)
    assert ca.rebuilds == cb.rebuilds == len(charted), "folded in and counted alike, not rebuilt"
