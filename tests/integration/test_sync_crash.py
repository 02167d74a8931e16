"""The hub SIGKILLed in the middle of syncing, again and again: the register ends with every item once, in order."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.register import RunningRegister

KILLS = int(os.environ.get("KOTIHUB_SYNC_KILLS", "25"))
REPO = Path(__file__).resolve().parents[2]


def child(state: Path, url: str, round_no: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.sync_child", str(state), url, str(round_no)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_while_syncing_neither_loses_nor_doubles(register: RunningRegister) -> None:
    hub = register.enroll()
    rng = random.Random(99)
    produced = 0
    for round_no in range(KILLS):
        proc = child(hub.state_dir, register.url, round_no)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        produced += 2000
        time.sleep(rng.uniform(0, 0.4))  # the fault: a kill somewhere in the sync
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    final = child(hub.state_dir, register.url, KILLS)
    out, _ = final.communicate(timeout=120)
    produced += 2000
    assert "SYNCED" in out
    readings = register.items(hub.hub_id, "readings")
    assert [seq for seq, _ in readings] == list(range(1, produced + 1)), "lost, doubled or out of order"
    assert [b["value"] for _, b in readings] == [float(v) for v in range(produced)]
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == list(range(1, KILLS + 2))
