"""The household's other readers on PostgreSQL with readings packed in chunks (cloud_sync/register/chunks.py): one
set of readings stored all as rows in household A and mostly as chunks in household B gives the same export records
(export.py, also with pages of a few rows and chunks), the same counts of what the register holds (mydata.held), the
same Home (webapp/homedata.py: each device's newest value per quantity, and the devices not yet in the device list
found in the hubs' recent readings) and the same lag in the fleet's view (fleet.record_heartbeat)."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from sqlalchemy import insert, select

from cloud_sync import protocol as p
from cloud_sync.register import chunks, db, export, fleet, mydata
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.registry import Registry
from cloud_sync.register.webapp import homedata
from tests.support.register import hub_row, store_as_chunks, store_as_rows

DAY = 86_400.0
NOW = time.time()
T0 = NOW - 3 * DAY

_Reading = tuple[str, str, str, float]  # device, quantity, channel, ts


def _readings_hub1() -> list[_Reading]:
    out: list[_Reading] = []
    out += [("d-kitchen", "temperature", "", T0 + i * 1200.0) for i in range(200)]  # ~2.8 days: several chunks
    out += [("d-kitchen", "temperature", "2", NOW - 300.0 - i * 900.0) for i in range(3)]  # rows, newer than chunks
    out += [("d-kitchen", "humidity", "", T0 + 3600.0 * i) for i in range(4)]  # rows only
    out += [("d-hall", "co2", "", T0 + 3 * 3600.0 * i + 11.0) for i in range(20)]  # a chunk a day, the newest newer
    out += [("d-hall", "co2", "2", T0 + 60.0 * i) for i in range(2)]  # rows, older than the chunks
    out += [("d-new", "pm25", "", NOW - 500.0 + 60.0 * i) for i in range(6)]  # not in the device list; a chunk
    out += [("d-new2", "humidity", "", NOW - 400.0 + 30.0 * i) for i in range(2)]  # not in the list; rows
    out += [("d-new-old", "pm25", "", NOW - 2 * 3600.0 + 60.0 * i) for i in range(6)]  # unnamed, not recent: hidden
    return out


def _readings_hub2() -> list[_Reading]:
    out: list[_Reading] = []
    out += [("d-garage", "temperature", "", T0 + DAY + i * 600.0) for i in range(50)]
    out += [("d-garage", "battery", "", T0 + DAY * i) for i in range(3)]
    return out


def _items(readings: list[_Reading], seed: int) -> list[p.ReadingItem]:
    """The readings in time order (as a hub sends them), seqs from 1, values from ``seed``; then one sensor whose
    readings' times are not in seq order (a hub whose clock was set back): its newest time is not its last seq."""
    rng = random.Random(seed)
    items = [
        p.ReadingItem(seq=1 + i, ts=ts, body=p.ReadingBody(dev, q, round(rng.uniform(-5.0, 30.0), 3), ts, channel))
        for i, (dev, q, channel, ts) in enumerate(sorted(readings, key=lambda r: r[3]))
    ]
    for k, dt in enumerate((0.0, 50.0, 10.0, 20.0, 30.0, 5.0)):
        ts = NOW - 3000.0 + dt
        items.append(p.ReadingItem(seq=len(items) + 1, ts=ts, body=p.ReadingBody("d-clock", "voltage", 3.0 + k, ts)))
    return items


@pytest.fixture
def reg(registry_pg_rows: Registry) -> Registry:
    """Chunk writing off, so that ``store_as_rows`` stores rows; ``store_as_chunks`` writes the chunks itself."""
    return registry_pg_rows


def _household(reg: Registry, name: str) -> tuple[HubIdentity, HubIdentity]:
    household = reg.create_household(name, actor="test")
    hubs = (HubIdentity(f"hub-{household}-1", household), HubIdentity(f"hub-{household}-2", household))
    for hub in hubs:
        hub_row(reg, hub.hub_id, household, NOW)
    with reg.engine.begin() as conn:
        conn.execute(
            insert(db.devices),
            [
                {"household_id": household, "device_id": d, "hub_id": hubs[0].hub_id, "kind": "sensor",
                 "name": name, "model": "", "room": room, "updated_at": NOW}
                for d, name, room in (
                    ("d-kitchen", "Lämpö", "Keittiö"), ("d-hall", "Ilma", "Aula"), ("d-clock", "Kello", "Aula")
                )
            ] + [
                {"household_id": household, "device_id": "d-garage", "hub_id": hubs[1].hub_id, "kind": "sensor",
                 "name": "Talli", "model": "", "room": "Autotalli", "updated_at": NOW}
            ],
        )  # fmt: skip
    return hubs


def _two(reg: Registry) -> tuple[tuple[HubIdentity, ...], tuple[HubIdentity, ...]]:
    """Household A with every reading a row, B with the same readings mostly in chunks; two hubs each."""
    a, b = _household(reg, "rows"), _household(reg, "chunks")
    packed: list[chunks.Chunk] = []
    for k, readings in enumerate((_readings_hub1(), _readings_hub2())):
        items = _items(readings, seed=k)
        store_as_rows(reg, a[k], items)
        packed += store_as_chunks(reg, b[k], items)[0]
    in_chunks = {(c.device_id, c.quantity) for c in packed}
    assert {("d-kitchen", "temperature"), ("d-hall", "co2"), ("d-new", "pm25"), ("d-clock", "voltage")} <= in_chunks
    assert {("d-garage", "temperature"), ("d-garage", "battery")} & in_chunks == {("d-garage", "temperature")}
    assert len([c for c in packed if c.device_id == "d-kitchen"]) >= 3, "chunks of at most a day"
    clock = next(c for c in packed if c.device_id == "d-clock")
    assert clock.ts_last == clock.ts[1] != clock.ts[-1]
    with reg.engine.connect() as conn:
        for household in (a[0].household_id, b[0].household_id):
            rows = conn.execute(
                select(db.readings.c.seq).where(db.readings.c.household_id == household).limit(1000)
            ).all()
            # A: all rows. B: only the few sensors' left-overs.
            assert (len(rows) > 300) is (household == a[0].household_id)
    return a, b


def _export_readings(reg: Registry, household_id: str, hubs: tuple[HubIdentity, ...]) -> list[dict[str, Any]]:
    """The export's reading records, the hub as its place in the household and without the arrival time."""
    place = {hub.hub_id: i for i, hub in enumerate(hubs)}
    out = []
    for record in export.export_household(reg, household_id, actor="test"):
        if record["type"] == "reading":
            assert "household_id" not in record
            assert isinstance(record.pop("received_at"), float)
            out.append({**record, "hub_id": place[record["hub_id"]]})
    return out


@pytest.mark.parametrize(("page", "chunk_page"), [(5000, 100), (7, 2), (1, 1), (40, 3), (3, 50)])
def test_the_export_holds_every_reading_once_in_order_whether_row_or_chunk(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, page: int, chunk_page: int
) -> None:
    a, b = _two(reg)
    monkeypatch.setattr(export, "_PAGE", page)
    monkeypatch.setattr(export, "_CHUNK_PAGE", chunk_page)
    rows, packed = _export_readings(reg, a[0].household_id, a), _export_readings(reg, b[0].household_id, b)
    total = len(_readings_hub1()) + len(_readings_hub2()) + 2 * 6
    assert len(rows) == total
    assert [(r["hub_id"], r["seq"]) for r in rows] == sorted({(r["hub_id"], r["seq"]) for r in rows})
    assert list(rows[0]) == ["type", "hub_id", "seq", "device_id", "quantity", "value", "ts", "channel"]
    assert packed == rows
    assert [list(r) for r in packed] == [list(r) for r in rows]  # the same keys in the same order (the JSON)
    assert all(type(x[k]) is type(y[k]) for x, y in zip(packed, rows, strict=True) for k in x)


def test_the_export_never_shows_another_households_chunks_on_the_hub(reg: Registry) -> None:
    a, b = _two(reg)
    # A chunk of another household under B's hub id (a hub never changes household; the export checks anyway).
    stray = chunks.split(_items(_readings_hub2(), seed=9), b[0].hub_id, a[0].household_id, NOW)[0]
    stray = [c._replace(seq_first=c.seq_first + 10_000, seq_last=c.seq_last + 10_000) for c in stray]
    with reg.engine.begin() as conn:
        chunks.copy_chunks(conn, stray)
    assert _export_readings(reg, b[0].household_id, b) == _export_readings(reg, a[0].household_id, a)


def test_what_we_hold_counts_the_readings_in_chunks(reg: Registry) -> None:
    a, b = _two(reg)
    rows, packed = mydata.held(reg, a[0].household_id), mydata.held(reg, b[0].household_id)
    assert rows["readings"] == len(_readings_hub1()) + len(_readings_hub2()) + 2 * 6
    assert packed == rows


def _home(reg: Registry, household_id: str) -> list[Any]:
    with reg.engine.connect() as conn:
        home = homedata.read(conn, household_id, NOW)
    return [
        (room, [(d.device_id, d.name, d.kind, d.room, d.values, d.last_heard) for d in devices])
        for room, devices in home.rooms
    ]


def test_home_shows_the_newest_values_and_the_unnamed_devices_from_chunks_too(reg: Registry) -> None:
    a, b = _two(reg)
    rows, packed = _home(reg, a[0].household_id), _home(reg, b[0].household_id)
    assert packed == rows
    devices = {d[0]: d for _, ds in rows for d in ds}
    # The unnamed devices of the last ten minutes, one of them only in chunks in B; not one of two hours ago.
    assert {"d-new", "d-new2"} <= set(devices) and "d-new-old" not in devices
    # The newest of d-kitchen's temperatures is a row (channel 2) in B, d-hall's co2 a chunk's; d-clock's voltage
    # is at its chunk's greatest time, not its last seq.
    kitchen = dict((q, (v, ts)) for q, v, _, ts in devices["d-kitchen"][4])
    assert kitchen["temperature"][1] == NOW - 300.0
    hall = dict((q, (v, ts)) for q, v, _, ts in devices["d-hall"][4])
    assert hall["co2"][1] == T0 + 3 * 3600.0 * 19 + 11.0
    assert devices["d-clock"][4] == [("voltage", 4.0, "V", NOW - 3000.0 + 50.0)]


def test_the_fleets_lag_counts_the_readings_in_chunks(reg: Registry) -> None:
    a, b = _two(reg)
    newest = len(_readings_hub1()) + 6  # d-clock's chunk holds the hub's newest seqs
    hb = p.Heartbeat(
        version="1.0.0",
        uptime_s=1.0,
        disk_free_bytes=1 << 30,
        disk_total_bytes=1 << 32,
        store_bytes=1 << 20,
        lanes={"readings": p.LaneHealth(newest + 4, 0, newest + 4)},
    )
    lags = []
    for hub in (a[0], b[0]):
        fleet.record_heartbeat(reg, hub, hb, now=NOW)
        with reg.engine.connect() as conn:
            lags.append(
                conn.execute(select(db.hub_health.c.lag_readings).where(db.hub_health.c.hub_id == hub.hub_id)).scalar()
            )
    assert lags == [4, 4]
