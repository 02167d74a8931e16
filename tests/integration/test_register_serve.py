"""``kotihub-register serve`` as a real process: it comes up over TLS, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cloud_sync.register.server import BackgroundServer
from cloud_sync.register.settings import Settings
from tests.support.lines import LineWatcher
from tests.support.postgres import free_port


def test_serve_subprocess_health_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud_sync.register.cli", "--state", str(state), "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    watcher = LineWatcher(proc.stderr, "register listening")
    try:
        assert watcher.seen.wait(60), watcher.text
        s = requests.Session()
        s.trust_env = False
        s.verify = str(state / "ca.crt")
        assert s.get(f"https://127.0.0.1:{port}/v1/health", timeout=10).json()["status"] == "ok"
        assert s.get(f"https://127.0.0.1:{port}/v1/commands", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        watcher.join(10)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it (systemd counts
    # death by SIGTERM as a clean stop).
    assert code in (0, -signal.SIGTERM)
    assert (state / "ca.key").stat().st_mode & 0o077 == 0
    assert (state / "server.key").stat().st_mode & 0o077 == 0
    assert "Traceback" not in watcher.text, watcher.text


def test_background_server_restarts_on_the_same_port(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    bg = BackgroundServer(settings, port=free_port(), graceful_s=1)
    s = requests.Session()
    s.trust_env = False
    s.verify = str(tmp_path / "state" / "ca.crt")
    try:
        bg.start()
        assert s.get(f"{bg.url}/v1/health", timeout=10).status_code == 200
        bg.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get(f"{bg.url}/v1/health", timeout=5)
        bg.start()
        assert s.get(f"{bg.url}/v1/health", timeout=10).status_code == 200
    finally:
        bg.close()
