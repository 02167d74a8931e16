"""`kotihub demo` as a newcomer runs it: it says what it does, each alarm once and in words when it reached the
register, no alarming warnings, and Ctrl-C ends it in order (summary, no traceback)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.lines import LineWatcher

REPO = Path(__file__).resolve().parents[2]


def ctrl_c_demo(marker: str, exit_status: int, **env: str) -> LineWatcher:
    """`kotihub demo` (two minutes), Ctrl-C once its output shows ``marker``; its exit status must be
    ``exit_status``. Returns what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "120"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    assert proc.stdout is not None
    watcher = LineWatcher(proc.stdout, marker)
    try:
        assert watcher.seen.wait(90), watcher.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == exit_status, watcher.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    watcher.join(10)
    return watcher


def test_the_demo_narrates_and_stops_cleanly_on_ctrl_c() -> None:
    # The recorded BLE smoke detector raises its alarm a few seconds in; the daemon then holds SIGINT.
    watcher = ctrl_c_demo("has reached the register", 0)
    lines = watcher.lines
    out = "\n".join(lines)
    assert "Traceback" not in out
    assert "ERROR" not in out
    assert "WARNING" not in out  # neither the alarm twice nor retention's wait for the clock as a warning
    assert re.search(r"starting a private mosquitto", out)
    assert "retention (destroying data after 183 days) waits for a trusted clock" in out
    alarms = [line.split()[2].rstrip(":") for line in lines if re.match(r"\d\d:\d\d:\d\d  ALARM ", line)]
    assert alarms, out
    assert len(alarms) == len(set(alarms)), out  # each alarm printed once (a detector alarms once before Ctrl-C)
    reached_lines = [line for line in lines if "has reached the register" in line]
    assert any(alarm in line for alarm in alarms for line in reached_lines), out
    assert "stopping: the hub flushes its store" in out
    assert re.search(r"^summary: \d+ devices", out, re.M), out
    assert re.search(r"^register: \d+ readings", out, re.M), out
    # The household's app and a one-time link for the demo member (passkeys need a host name: localhost).
    assert re.search(r"the household's app: https://localhost:\d+/app/ ", out), out
    assert re.search(r"one-time sign-in link .*: https://localhost:\d+/app/enrol/[A-Za-z0-9_-]{43}$", out, re.M), out


def test_ctrl_c_while_the_demo_sets_up_leaves_nothing_behind(tmp_path: Path) -> None:
    watcher = ctrl_c_demo("starting a private mosquitto", 130, TMPDIR=str(tmp_path))  # before the daemon holds SIGINT
    assert "Traceback" not in watcher.text
    assert watcher.lines[-1] in ("demo stopped; its temporary state is removed", "interrupted"), watcher.text
    assert list(tmp_path.iterdir()) == []  # the demo's temporary state, mosquitto's and the register's: all gone
