"""What Home reads, on SQLite and PostgreSQL: each device's newest value per quantity (not an older one, not another
household's), online/offline from availability or from when it was last heard, rooms in order, open alarms only,
and a device with fresh readings before the hub has sent its device list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from cloud_sync.register import db
from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp import homedata


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    reg = Registry(Settings(state_dir=tmp_path / "register", db_url=url))
    try:
        yield reg
    finally:
        reg.close()


def _fill(reg: Registry, h: str, now: float, marker: float) -> None:
    hub = f"hub_{h}"
    devices = [("d-kitchen", "Keittiö"), ("d-hall", "Eteinen"), ("d-none", ""), ("d-quiet", "Eteinen")]
    seq = 0

    def reading(device: str, quantity: str, value: float, ts: float) -> dict[str, object]:
        nonlocal seq
        seq += 1
        return {"hub_id": hub, "seq": seq, "household_id": h, "device_id": device, "quantity": quantity,
                "value": value, "ts": ts, "received_at": ts}  # fmt: skip

    with reg.engine.begin() as conn:
        conn.execute(
            insert(db.hubs).values(
                id=hub, household_id=h, name="koti", cert_sha256="0" * 64, enrolled_at=now, last_seen=now - 60
            )
        )
        conn.execute(
            insert(db.devices),
            [
                {"household_id": h, "device_id": d, "hub_id": hub, "kind": "sensor", "name": d, "room": room,
                 "updated_at": now}
                for d, room in devices
            ],
        )  # fmt: skip
        conn.execute(
            insert(db.readings),
            [
                reading("d-kitchen", "temperature", 19.0, now - 7200),
                reading("d-kitchen", "temperature", marker, now - 60),  # the newest
                reading("d-kitchen", "temperature", 18.0, now - 3600),  # arrived later, measured earlier
                reading("d-kitchen", "battery", 12.0, now - 86400),
                reading("d-kitchen", "linkquality", 99.0, now),  # not a quantity Home shows
                reading("d-hall", "humidity", 40.0, now - 5 * 3600),
                reading("d-quiet", "co2", 600.0, now - 5 * 3600),
                reading("d-unnamed", "temperature", 5.0, now - 30),  # not in the hub's device list yet
                reading("d-gone", "temperature", 5.0, now - 4 * 3600),  # nor this, and silent for hours
            ],
        )
        conn.execute(
            insert(db.events),
            [
                {"hub_id": hub, "lane": "events", "seq": i, "household_id": h, "device_id": "d-hall",
                 "kind": "availability", "state": state, "attrs": {}, "ts": ts, "received_at": ts}
                for i, (state, ts) in enumerate((("offline", now - 100), ("online", now - 50)), 1)
            ],
        )  # fmt: skip
        conn.execute(
            insert(notify_schema.alarms),
            [
                {"id": f"{hub}.a.{i}", "household_id": h, "hub_id": hub, "device_id": "d-kitchen",
                 "category": "smoke", "urgent": True, "place": "Keittiö", "raised_at": now - i,
                 "received_at": now - i, "late": False, "acked_at": acked, "cleared_at": None}
                for i, acked in ((1, None), (2, now))
            ],
        )  # fmt: skip


def test_home_reads_the_newest_values_and_states_of_its_own_household_only(registry: Registry) -> None:
    now = time.time()
    mine, theirs = registry.create_household("A", actor="t"), registry.create_household("B", actor="t")
    _fill(registry, mine, now, marker=21.5)
    _fill(registry, theirs, now, marker=-40.0)
    with registry.engine.connect() as conn:
        home = homedata.read(conn, mine, now)
    assert [h["online"] for h in home.hubs] == [True]
    assert [room for room, _ in home.rooms] == ["Eteinen", "Keittiö", ""]  # named rooms first, no room last
    devices = {d.device_id: d for _, ds in home.rooms for d in ds}
    # A device with fresh readings shows before the hub has described it; an old unknown one does not.
    assert set(devices) == {"d-kitchen", "d-hall", "d-none", "d-quiet", "d-unnamed"}
    assert [(q, v) for q, v, _, _ in devices["d-unnamed"].values] == [("temperature", 5.0)]
    kitchen = devices["d-kitchen"]
    assert [(q, v) for q, v, _, _ in kitchen.values] == [("temperature", 21.5), ("battery", 12.0)]
    assert kitchen.battery == 12.0 and kitchen.status(now) == "online"
    assert devices["d-hall"].status(now) == "online"  # its latest availability report, though heard from long ago
    assert devices["d-quiet"].status(now) == "offline"  # nothing for over 3 hours, no availability reports
    assert devices["d-none"].status(now) == "unknown" and devices["d-none"].values == []
    assert [a["id"] for a in home.alarms] == [f"hub_{mine}.a.1"]  # the acknowledged one is not open
