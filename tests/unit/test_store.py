"""The store's promises: accepted means committed, nothing personal in the clear, corruption and full disks handled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import crypto
from gateway.errors import DecryptError, KeyDestroyedError, SchemaTooNewError, StoreFullError
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
from gateway.store import Store, schema
from tests.support.stores import db_files, open_store

T0 = 1_790_000_000.0
MARKER = "PLAINTEXT-MARKER-7f3a"


def readings(n: int, start: float = T0, device: str = "mqtt:0x1") -> list[Reading]:
    return [Reading(device, Quantity.TEMPERATURE, 20.0 + i / 100, start + i) for i in range(n)]


async def test_readings_and_events_round_trip_with_sequences(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        last = await store.add_readings(readings(10))
        seq = await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0))
        assert last == 10
        assert seq == 1
        stored = await asyncio.to_thread(lambda: list(store.iter_readings()))
        assert [s for s, _ in stored] == list(range(1, 11))
        assert [r for _, r in stored] == readings(10)
        assert [i.body["state"] for i in await store.pending(Lane.ALARM)] == ["smoke"]


async def test_outbox_cursor_depth_and_reopen(tmp_path: Path) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path, key) as store:
        await store.add_readings(readings(25))
        assert (await store.depth())["readings"] == 25
        first = await store.pending(Lane.READINGS, limit=10)
        assert [i.seq for i in first] == list(range(1, 11))
        await store.mark_synced(Lane.READINGS, 10)
        assert (await store.depth())["readings"] == 15
        assert [i.seq for i in await store.pending(Lane.READINGS, limit=100)] == list(range(11, 26))
        assert [i.seq for i in await store.pending(Lane.READINGS, after=20)] == list(range(21, 26))
        await store.mark_synced(Lane.READINGS, 5)  # never moves back
    async with open_store(tmp_path, key) as store:
        assert store.synced_seq(Lane.READINGS) == 10
        assert (await store.depth())["readings"] == 15
        assert await store.add_readings(readings(1)) == 26


async def test_readings_across_midnight_use_each_days_key(tmp_path: Path) -> None:
    midnight = (int(T0) // 86_400 + 1) * 86_400
    async with open_store(tmp_path) as store:
        await store.add_readings(readings(4, start=midnight - 2))
        rows = await asyncio.to_thread(
            lambda: store._reader.connect().execute(sa.select(schema.reading_frames.c.epoch)).scalars().all()
        )
        assert sorted(rows) == [midnight // 86_400 - 1, midnight // 86_400]
        assert [r for _, r in store.iter_readings()] == readings(4, start=midnight - 2)


async def test_devices_and_audit_are_kept_encrypted(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        info = DeviceInfo(device_id="ble:a4c1380a0b0c", driver="ble", kind=DeviceKind.SENSOR, name="Makuuhuone")
        assert await store.upsert_device(info) is True
        assert await store.upsert_device(info) is False
        await store.audit("technician", "rename", info.device_id, {"old": "", "new": "Makuuhuone"})
        devices = await store.devices()
        assert [d.info for d in devices] == [info]
        assert [(a.actor, a.action) for a in store.iter_audit()] == [("technician", "rename")]


async def test_no_plaintext_reaches_the_database_wal_or_shm(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_readings([Reading(f"mqtt:{MARKER}", Quantity.HUMIDITY, 55.5, T0)])
        await store.add_event(
            Event(device_id=f"mqtt:{MARKER}", kind=EventKind.MOTION, state="on", ts=T0, attrs={"room": MARKER})
        )
        await store.upsert_device(
            DeviceInfo(device_id=f"mqtt:{MARKER}", driver="mqtt", kind=DeviceKind.SENSOR, name=MARKER, room=MARKER)
        )
        await store.audit("household", "rename", MARKER, {"new": MARKER})
        await store.flush()
        live = {p.name: p.read_bytes() for p in db_files(tmp_path)}
    after = {p.name: p.read_bytes() for p in db_files(tmp_path)}
    assert {"kotihub.db", "kotihub.db-wal", "kotihub.db-shm"} <= set(live)
    for name, data in [*live.items(), *after.items()]:
        assert MARKER.encode() not in data, f"plaintext marker found in {name}"
        assert MARKER.encode("utf-16-le") not in data


async def test_swapped_or_moved_records_are_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_readings(readings(3))
        await store.flush()
        await store.add_readings(readings(3, start=T0 + 10))
        for state in ("a", "b"):
            await store.add_event(Event(device_id="x", kind=EventKind.MOTION, state=state, ts=T0))
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            blobs = conn.execute("SELECT first_seq, blob FROM reading_frames ORDER BY first_seq").fetchall()
            assert len(blobs) == 2
            conn.execute("UPDATE reading_frames SET blob=? WHERE first_seq=?", (blobs[1][1], blobs[0][0]))
            conn.execute("UPDATE reading_frames SET blob=? WHERE first_seq=?", (blobs[0][1], blobs[1][0]))
            conn.execute("UPDATE items SET seq = 7 WHERE lane = 'events' AND seq = 2")
            conn.commit()
        with pytest.raises(DecryptError):
            list(store.iter_readings())
        with pytest.raises(DecryptError):
            await store.pending(Lane.EVENTS)


async def test_destroyed_epoch_key_makes_its_records_unreadable(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_readings(readings(3))
        epoch = crypto.epoch_of(T0)
        await store.run_write(
            lambda conn: conn.execute(sa.delete(schema.epoch_keys).where(schema.epoch_keys.c.epoch == epoch))
        )
        store.keyring.forget(epoch)
        with pytest.raises(KeyDestroyedError):
            list(store.iter_readings())


async def test_a_corrupt_database_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path, key) as store:
        await store.add_readings(readings(500))
    db = tmp_path / "kotihub.db"
    data = bytearray(db.read_bytes())
    data[4096 : 4096 * 3] = os.urandom(4096 * 2)  # wreck b-tree pages, as a failing SD card would
    db.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    async with open_store(tmp_path, key) as store:
        assert store.quarantined is not None and store.quarantined.exists()
        assert "moved it aside" in caplog.text
        assert await store.add_readings(readings(2)) == 2
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_a_database_from_newer_code_is_refused_untouched(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    db = tmp_path / "kotihub.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + schema.COMPATIBLE_AHEAD + 1}")
    before = db.read_bytes()
    with pytest.raises(SchemaTooNewError, match="refusing"):
        open_store(tmp_path)
    assert db.read_bytes() == before


async def test_a_failing_migration_leaves_the_old_database_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    async with open_store(tmp_path, key) as store:
        await store.add_readings(readings(5))

    def broken(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    released = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(RuntimeError, match="migration bug"):
        open_store(tmp_path, key)
    monkeypatch.undo()
    with contextlib.closing(sqlite3.connect(tmp_path / "kotihub.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (released,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchall() == []
    async with open_store(tmp_path, key) as store:
        assert len(list(store.iter_readings())) == 5


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def test_a_full_disk_refuses_writes_keeps_what_was_accepted_and_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        key = os.urandom(32)
        state = disk / "state"
        store = open_store(state, key, journal_size_limit=0)
        async with store:
            accepted = 0
            ballast = disk / "ballast"
            with ballast.open("wb") as f, contextlib.suppress(OSError):
                f.write(b"\0" * (1024 * 1024))  # fill the disk
            refused = None
            for i in range(200):
                try:
                    await store.add_readings(readings(200, start=T0 + i * 1000, device=f"mqtt:{os.urandom(8).hex()}"))
                    accepted += 200
                except StoreFullError as exc:
                    refused = exc
                    break
            assert refused is not None, "the disk never filled"
            assert "disk is full" in str(refused)
            assert store.rejected_full >= 200
            assert store.healthy
            ballast.unlink()
            assert await store.add_readings(readings(5, start=T0 + 999_000)) > 0
            stored = await asyncio.to_thread(lambda: list(store.iter_readings()))
            assert len(stored) == accepted + 5
        with contextlib.closing(sqlite3.connect(state / "kotihub.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_the_free_space_reserve_gives_back_pressure_before_sqlite_fails(tmp_path: Path) -> None:
    async with open_store(tmp_path, min_free_bytes=2**62) as store:
        with pytest.raises(StoreFullError, match="readings refused"):
            await store.add_readings(readings(3))
        assert store.rejected_full == 3
        # Alarms are still accepted: the reserve is there for them.
        assert await store.add_event(Event(device_id="x", kind=EventKind.SMOKE, state="smoke", ts=T0)) == 1


async def test_store_is_usable_again_after_close_and_reopen_by_a_new_process_key(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_readings(readings(2))
    with pytest.raises(DecryptError):
        # Another hub's master key cannot unwrap this hub's epoch keys.
        list(Store.open(tmp_path, os.urandom(32), crypto.Algorithm.CHACHA20_POLY1305).iter_readings())


async def test_an_alarm_never_waits_for_the_group_commit_deadline(tmp_path: Path) -> None:
    async with open_store(tmp_path, commit_interval=5.0) as store:
        started = time.perf_counter()
        alarm = asyncio.ensure_future(store.add_event(Event(device_id="s", kind=EventKind.SMOKE, state="smoke", ts=T0)))
        await asyncio.sleep(0)  # the alarm is queued first ...
        cursor = store.mark_synced(Lane.READINGS, 0)  # ... then something that may wait for the deadline
        readings_done = store.submit_readings(readings(3))
        await alarm
        assert time.perf_counter() - started < 1.0, "the alarm waited for the 5 s group-commit deadline"
        await asyncio.gather(cursor, readings_done)
