"""SIGKILL anywhere in an erasure: after a restart it always completes, and never leaves half the data."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import crypto
from gateway.privacy import JOB_KEY, RECEIPTS_KEY, verify_receipt
from gateway.store import Store

POINTS = int(os.environ.get("KOTIHUB_ERASE_KILLS", "30"))
REPO = Path(__file__).resolve().parents[2]


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.erase_child", *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


def settings(state: Path) -> dict[str, object]:
    with contextlib.closing(sqlite3.connect(state / "kotihub.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM settings")}


@pytest.mark.slow
def test_erasure_killed_at_random_points_always_completes(tmp_path: Path) -> None:
    template = tmp_path / "template"
    assert child("fill", str(template)).wait(60) == 0
    # How long an uninterrupted erasure of each scope takes, so the kills are spread over all of it.
    span: dict[str, float] = {}
    for scope, target in (("all", ""), ("device", "mqtt:erase")):
        timing = tmp_path / f"timing-{scope}"
        shutil.copytree(template, timing)
        proc = child("erase", str(timing), scope, target)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        started = time.monotonic()
        assert proc.stdout.readline().startswith("DONE")
        span[scope] = time.monotonic() - started
        proc.wait(30)
    rng = random.Random(7)
    interrupted = 0
    for point in range(POINTS):
        state = tmp_path / f"run{point}"
        shutil.copytree(template, state)
        scope, target = ("all", "") if point % 2 == 0 else ("device", "mqtt:erase")
        proc = child("erase", str(state), scope, target)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0, span[scope]))  # the fault injected: a kill somewhere in the erasure
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if "DONE" not in out:
            interrupted += 1
        again = child("erase", str(state), scope, target)
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0
        receipt = json.loads(out.split("DONE ", 1)[1])
        assert verify_receipt(receipt)
        saved = settings(state)
        assert JOB_KEY not in saved or saved[JOB_KEY] is None, "the erasure job was left unfinished"
        assert saved[RECEIPTS_KEY], "no receipt was kept"
        key = crypto.load_master_key(state, create=False)
        store = Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305)
        devices = {r.device_id for _, r in store.iter_readings(skip_destroyed=True)}
        events = {i.body["device_id"] for i in store.iter_items("events", skip_destroyed=True)}
        if scope == "all":
            assert devices == set()
            assert events == set()
        else:
            assert devices == {"mqtt:keep", ""}, "the erased device's readings survived, or others were lost"
            assert events == {"mqtt:keep"}
            assert sum(1 for _, r in store.iter_readings() if r.device_id == "mqtt:keep") == 20 * 200
        shutil.rmtree(state)
    assert interrupted >= POINTS // 3, f"only {interrupted} kills landed inside an erasure"
