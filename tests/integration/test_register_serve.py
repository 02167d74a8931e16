"""``kotihub-register serve`` as a real process: it comes up over TLS, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from cloud_sync.enroll import enroll
from cloud_sync.register.registry import Registry
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


def test_serve_stops_within_two_seconds_during_a_long_poll_and_a_cut_upload_is_no_traceback(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud_sync.register.cli", "--state", str(state), "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "register listening" in line:
                ready.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    poll_result: list[Any] = []
    try:
        assert ready.wait(60), "".join(lines)
        url = f"https://127.0.0.1:{port}"
        registry = Registry(Settings(state_dir=state))
        try:
            household = registry.create_household("Virtanen", actor="test")
            token = registry.create_enroll_token(household, ttl_s=600, actor="test")
        finally:
            registry.close()
        hub_dir = tmp_path / "hub"
        enroll(url, token, hub_dir, ca_file=state / "ca.crt")
        s = requests.Session()
        s.trust_env = False
        s.cert = (str(hub_dir / "hub.crt"), str(hub_dir / "hub.key"))
        s.verify = str(hub_dir / "register-ca.crt")
        record = {"clip_id": "cut1", "device_id": "camera:1", "started": 1.0, "duration_s": 1.0}
        record |= {"size": 100_000, "sha256": "0" * 64, "reason": "test"}
        assert s.put(f"{url}/v1/clips/cut1", json=record, timeout=10).status_code == 200
        # An upload cut mid-body: the headers promise 100 000 bytes, the connection ends after 1 000.
        with socket.create_connection(("127.0.0.1", port)) as raw:
            ctx = ssl.create_default_context(cafile=str(hub_dir / "register-ca.crt"))
            ctx.load_cert_chain(str(hub_dir / "hub.crt"), str(hub_dir / "hub.key"))
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(
                    b"PATCH /v1/clips/cut1?offset=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
                )
        assert s.get(f"{url}/v1/clips/cut1/status", timeout=10).json()["offset"] == 0  # nothing half-stored

        def long_poll() -> None:
            poll_result.append(s.get(f"{url}/v1/commands", params={"wait": 25}, timeout=40))

        poller = threading.Thread(target=long_poll, daemon=True)
        poller.start()
        # The poll is in the register's hands once its connection is open; give it the time to arrive.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _has_connection(proc.pid, port):
            time.sleep(0.05)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        elapsed = time.monotonic() - started
        poller.join(10)
        watcher.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code in (0, -signal.SIGTERM)
    assert elapsed < 2.0, f"the register took {elapsed:.2f} s to stop"
    assert poll_result and poll_result[0].status_code == 200 and poll_result[0].json() == []
    assert not any("Traceback" in line or "ERROR" in line for line in lines), "".join(lines)


def _has_connection(pid: int, port: int) -> bool:
    """Whether the register holds an established connection on ``port`` (from /proc, no extra tools)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                if fields[1].endswith(wanted) and fields[3] == "01":  # local port, ESTABLISHED
                    return True
    return False
