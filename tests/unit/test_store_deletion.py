"""Erasure and retention share one sliced deletion routine: a large erasure commits per time-boxed slice, never
per frame, and never in one transaction that would stall ingest."""

from __future__ import annotations

import math
from pathlib import Path

from gateway.model import Event, EventKind, Quantity, Reading
from gateway.privacy import Eraser
from gateway.store import Store
from tests.support.stores import open_store

T0 = 1_795_000_000.0
FRAMES = 240
PER_FRAME = 3


async def _fill(store: Store) -> None:
    """``FRAMES`` frames, each from its own commit, each with readings of a doomed and a kept device."""
    for f in range(FRAMES):
        ts = T0 + f
        await store.add_readings(
            [
                Reading("mqtt:doomed", Quantity.TEMPERATURE, 20.0 + f, ts),
                *(Reading("mqtt:kept", Quantity.HUMIDITY, float(k), ts) for k in range(PER_FRAME - 1)),
            ]
        )


def _commits(store: Store) -> int:
    return int(store.health()["commits"])


def _frames(store: Store) -> int:
    return int(store.read(lambda c: c.exec_driver_sql("SELECT count(*) FROM reading_frames").scalar_one()))


async def test_a_large_erasure_commits_in_bounded_slices_not_per_frame(tmp_path: Path) -> None:
    async with open_store(tmp_path / "hub", commit_interval=0.001) as store:
        await _fill(store)
        await store.flush()
        assert _frames(store) == FRAMES
        before = _commits(store)
        # A zero budget: each slice does one chunk (the least a slice does) and commits.
        blanked = await store.erase_readings("mqtt:doomed", budget_s=0.0)
        slices = _commits(store) - before
        assert blanked == FRAMES
        # One commit per chunk of 8 frames, plus the one that finds nothing left: bounded, and far fewer than frames.
        assert math.ceil(FRAMES / 8) <= slices <= math.ceil(FRAMES / 8) + 2, slices
        left = [(seq, r.device_id) for seq, r in store.iter_readings()]
    assert len(left) == FRAMES * PER_FRAME  # sequences stay; only the doomed device's content is gone
    assert {d for _, d in left} == {"", "mqtt:kept"}
    assert sum(1 for _, d in left if d == "") == FRAMES


async def test_an_erasure_job_takes_few_commits_for_many_frames(tmp_path: Path) -> None:
    """The eraser runs with the default time budget: a whole device erasure over many frames is a handful of
    commits (per slice), where committing per frame took one per frame."""
    async with open_store(tmp_path / "hub", commit_interval=0.001) as store:
        await _fill(store)
        for i in range(300):
            await store.add_event(Event(device_id="mqtt:doomed", kind=EventKind.MOTION, state="on", ts=T0 + i))
        await store.flush()
        eraser = Eraser(store, b"k" * 32, spool_dir=None, hub_name="koti")
        before = _commits(store)
        receipt = await eraser.request("device", "mqtt:doomed", requested_by="test")
        used = _commits(store) - before
        assert receipt["receipt"]["erased"]["readings"] == FRAMES
        assert receipt["receipt"]["erased"]["items"] == 300
        # Slices of readings and of each lane's items, the device record, the job's bookkeeping and the scrub:
        # bounded by the lanes, not by the 240 frames and 300 items erased.
        assert used < 40, used
        assert not [r for _, r in store.iter_readings() if r.device_id == "mqtt:doomed"]
        assert not [i for i in store.iter_items("events") if i.body["device_id"] == "mqtt:doomed"]
