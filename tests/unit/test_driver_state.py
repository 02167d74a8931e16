"""Driver state in the store: encrypted records, keys hashed, committed with readings, erased with the household."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from gateway.model import Quantity, Reading
from gateway.privacy import Eraser
from gateway.store import schema
from gateway.store.driver_state import StoreMemory
from tests.support.stores import db_files, open_store

MAC = "A4:C1:38:02:83:F4"
T0 = 1_795_000_000.0


async def test_records_round_trip_encrypted_with_their_keys_hashed(tmp_path: Path) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path, key) as store:
        memory = StoreMemory(store)
        await memory.save("ble.adopted", MAC, b"household-secret-value", device_id=f"ble:{MAC.lower()}")
        await memory.save("mqtt.z2m", "zigbee2mqtt", b"Anna's bedroom")
        await memory.save("mqtt.z2m", "gone", b"x")
        await memory.save("mqtt.z2m", "gone", None)
        assert await memory.load("ble.adopted") == {MAC: b"household-secret-value"}
        assert await memory.load("mqtt.z2m") == {"zigbee2mqtt": b"Anna's bedroom"}
        await store.scrub()
    raw = b"".join(p.read_bytes() for p in db_files(tmp_path))
    for plaintext in (MAC.encode(), b"household-secret-value", b"Anna's bedroom", b"zigbee2mqtt"):
        assert plaintext not in raw
    async with open_store(tmp_path, key) as store:  # and after a restart
        assert await StoreMemory(store).load("mqtt.z2m") == {"zigbee2mqtt": b"Anna's bedroom"}


async def test_a_record_riding_along_commits_with_the_readings_of_its_tick(tmp_path: Path) -> None:
    async with open_store(tmp_path, commit_interval=60.0) as store:  # nothing commits by the deadline here
        memory = StoreMemory(store)
        readings = store.submit_readings([Reading("mqtt:a", Quantity.HUMIDITY, 40.0, T0)])
        record = memory.save("mqtt.recent", "ring", b"digests", with_readings=True)
        assert record is readings  # one write op, one transaction: both or neither
        await memory.commit_soon()
        assert readings.done() and record.done()
        assert await memory.load("mqtt.recent") == {"ring": b"digests"}


async def test_erasure_removes_driver_records(tmp_path: Path) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path / "hub", key) as store:
        memory = StoreMemory(store)
        await memory.save("ble.adopted", MAC, b"1", device_id=f"ble:{MAC.lower()}")
        await memory.save("ble.adopted", "11:22:33:44:55:66", b"1", device_id="ble:11:22:33:44:55:66")
        eraser = Eraser(store, key, spool_dir=None, hub_name="koti")
        receipt = await eraser.request("device", f"ble:{MAC.lower()}", requested_by="household")
        assert receipt["receipt"]["erased"]["driver_records"] == 1
        assert await memory.load("ble.adopted") == {"11:22:33:44:55:66": b"1"}
        await memory.save("mqtt.z2m", "zigbee2mqtt", b"map")
        await eraser.request("all", requested_by="household")
        rows = store.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(schema.driver_state)).scalar())
        assert rows == 0
