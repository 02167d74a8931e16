"""Export holds everything stored and nothing else; erasure removes exactly its scope and leaves no residue."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from gateway import crypto
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
from gateway.privacy import Eraser, ExportProgress, export_archive, verify_receipt
from tests.support.stores import db_files, open_store

T0 = 1_795_000_000.0


async def populate(store, spool: Path) -> None:  # type: ignore[no-untyped-def]
    for device in ("mqtt:a", "mqtt:b"):
        await store.upsert_device(DeviceInfo(device_id=device, driver="mqtt", kind=DeviceKind.SENSOR, name=device[-1]))
        await store.add_readings([Reading(device, Quantity.HUMIDITY, 40.0 + i, T0 + i) for i in range(30)])
        await store.add_event(Event(device_id=device, kind=EventKind.MOTION, state="on", ts=T0))
    await store.add_event(Event(device_id="mqtt:a", kind=EventKind.SMOKE, state="smoke", ts=T0 + 5))
    spool.mkdir(exist_ok=True)
    (spool / "clip1.age").write_bytes(b"age-encryption.org/v1\n" + os.urandom(200))
    await store.add_item(
        Lane.CLIPS,
        T0,
        {
            "clip_id": "clip1",
            "device_id": "camera:x",
            "started": T0,
            "duration_s": 10.0,
            "size": 222,
            "sha256": "0" * 64,
            "reason": "motion",
        },
        ref="clip1",
    )


async def test_export_round_trip(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    async with open_store(tmp_path / "hub") as store:
        await populate(store, spool)
        await store.audit("cli", "rename", "mqtt:a", {"new": "a"})
        await store.flush()
        out = tmp_path / "export.zip"
        progress = ExportProgress()
        export_archive(store, out, hub_name="koti", spool_dir=spool, progress=progress)
    assert progress.finished
    assert out.stat().st_mode & 0o777 == 0o640  # readable by the kotihub group, no one else
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        readings = [json.loads(line) for line in zf.read("readings.jsonl").splitlines()]
        events = [json.loads(line) for line in zf.read("events.jsonl").splitlines()]
        devices = json.loads(zf.read("devices.json"))
        clips = json.loads(zf.read("clips.json"))
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest, name
        assert zf.read("clips/clip1.age") == (spool / "clip1.age").read_bytes()
    assert manifest["format"] == "kotihub-export/1"
    assert manifest["counts"] == {"readings": 60, "events": 3, "devices": 2, "audit": 1, "clips": 1}
    assert manifest["time_range"] == {"first": T0, "last": T0 + 29}
    assert {r["device_id"] for r in readings} == {"mqtt:a", "mqtt:b"}
    assert sorted((e["lane"], e["kind"]) for e in events) == [
        ("alarm", "smoke"),
        ("events", "motion"),
        ("events", "motion"),
    ]
    assert {d["name"] for d in devices} == {"a", "b"}
    assert clips[0]["clip_id"] == "clip1"


async def test_erase_device_removes_only_that_device_and_leaves_no_ciphertext(tmp_path: Path) -> None:
    key = os.urandom(32)
    spool = tmp_path / "spool"
    async with open_store(tmp_path / "hub", key) as store:
        await populate(store, spool)
        await store.flush()
        frames_sql = "SELECT first_seq, blob FROM reading_frames"
        old = dict(store.read(lambda c: c.exec_driver_sql(frames_sql).all()))
        eraser = Eraser(store, key, spool_dir=spool, hub_name="koti")
        receipt = await eraser.request("device", "mqtt:a", requested_by="household")
        left = [r for _, r in store.iter_readings()]
        assert {r.device_id for r in left} == {"mqtt:b", ""}
        assert len([r for r in left if r.device_id == "mqtt:b"]) == 30
        assert {d.info.device_id for d in await store.devices()} == {"mqtt:b"}
        assert [i.body["device_id"] for i in store.iter_items(Lane.EVENTS)] == ["mqtt:b"]
        assert list(store.iter_items(Lane.ALARM)) == []
        pending = await store.pending(Lane.READINGS, limit=1000)
        assert {i.body["device_id"] for i in pending} == {"mqtt:b"}
        new = dict(store.read(lambda c: c.exec_driver_sql(frames_sql).all()))
        rewritten = [seq for seq in old if old[seq] != new[seq]]
        assert rewritten, "no frame held the erased device's readings"
        raw = b"".join(p.read_bytes() for p in db_files(tmp_path / "hub"))
        for seq in rewritten:
            assert old[seq][30:70] not in raw, "ciphertext of the erased frame is still on disk"
    assert verify_receipt(receipt)
    assert receipt["receipt"]["erased"]["readings"] == 30
    tampered = json.loads(json.dumps(receipt))
    tampered["receipt"]["erased"]["readings"] = 0
    assert not verify_receipt(tampered)


async def test_erase_all_destroys_keys_and_keeps_sequences_moving(tmp_path: Path) -> None:
    key = os.urandom(32)
    spool = tmp_path / "spool"
    async with open_store(tmp_path / "hub", key) as store:
        await populate(store, spool)
        last = await store.add_readings([Reading("mqtt:a", Quantity.HUMIDITY, 1.0, T0)])
        eraser = Eraser(store, key, spool_dir=spool, hub_name="koti")
        receipt = await eraser.request("all", requested_by="household")
        assert receipt["receipt"]["erased"]["keys_destroyed"] >= 2
        assert list(store.iter_readings()) == []
        assert await store.devices() == []
        assert not (spool / "clip1.age").exists()
        assert (await store.depth())["readings"] == 0
        # The register deduplicates on sequences: new data after an erasure must not reuse them.
        assert await store.add_readings([Reading("mqtt:a", Quantity.HUMIDITY, 2.0, T0)]) == last + 1
        epochs = store.read(lambda c: c.exec_driver_sql("SELECT epoch FROM epoch_keys").scalars().all())
        assert crypto.epoch_of(T0) in epochs  # only the new reading's and the receipt audit's keys exist


async def test_erase_camera_category_removes_clips(tmp_path: Path) -> None:
    key = os.urandom(32)
    spool = tmp_path / "spool"
    async with open_store(tmp_path / "hub", key) as store:
        await populate(store, spool)
        receipt = await Eraser(store, key, spool_dir=spool, hub_name="koti").request(
            "category", "camera", requested_by="household"
        )
        assert receipt["receipt"]["erased"]["clip_files"] == 1
        assert list(store.iter_items(Lane.CLIPS)) == []
        assert len(list(store.iter_readings())) == 60


def test_the_hub_and_the_register_agree_on_what_each_category_covers() -> None:
    from cloud_sync.protocol import ERASURE_CATEGORIES
    from gateway.model import Category
    from gateway.privacy import CATEGORY_LANES, PRESENCE_KINDS

    assert set(ERASURE_CATEGORIES) == {c.value for c in Category}
    for category in Category:
        spec = ERASURE_CATEGORIES[category.value]
        hub_lanes = set(CATEGORY_LANES[category]) | ({"readings"} if category is Category.SENSORS else set())
        assert hub_lanes == set(spec["lanes"]), category
    assert set(ERASURE_CATEGORIES["presence"]["event_kinds"]) == set(PRESENCE_KINDS)
    assert set(ERASURE_CATEGORIES["sensors"]["event_kinds"]) == {"water_leak", "availability"}
