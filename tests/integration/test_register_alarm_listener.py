"""``kotihub-register serve --alarm-port``: a process of its own serving only the alarm lane (same mTLS, same hub
checks), 404 for everything else, announced by the main port, restarted by the supervisor, the bulk workers niced
under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from cloud_sync import protocol as p
from cloud_sync.enroll import renew
from tests.integration.test_register import INGEST_HEADERS, batch, event
from tests.support.postgres import free_port
from tests.support.register_fleet import (
    ACTOR,
    Fleet,
    metric,
    session,
    wait_for_log,
    worker_pids,
)
from tests.support.register_proc import RegisterProcess


def _nice(pid: int) -> int:
    # /proc/PID/stat: the 19th field is the nice value; the command name (field 2) may hold spaces, so split after it.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _listener_pid(parent: int, port: int) -> int:
    """The supervisor's child holding the listening socket of ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # local address, state LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    owners = set()
    for pid in worker_pids(parent):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    owners.add(pid)
            except FileNotFoundError:
                continue
    (pid,) = owners
    return pid


def _alarm(hub_session: requests.Session, url: str, hub: object, seqs: range) -> requests.Response:
    return hub_session.post(
        f"{url}/v1/ingest/alarm", data=batch(hub, "alarm", seqs, body=event), headers=INGEST_HEADERS, timeout=30
    )  # type: ignore[arg-type]


def test_the_alarm_port_serves_the_alarm_lane_alone(tmp_path: Path, postgres_url: str, fleet: Fleet) -> None:
    alarm_port = free_port()
    proc = RegisterProcess(
        fleet.state, {}, db_url=postgres_url, args=("--workers", "2", "--alarm-port", str(alarm_port))
    )
    proc.start()
    try:
        wait_for_log(proc, f"alarm listener on 127.0.0.1:{alarm_port}")
        alarm_url = f"https://127.0.0.1:{alarm_port}"
        hub = fleet.hub(proc.url, 1)
        s = hub.session()

        # The main port announces it on its /v1/ replies, with the host the hub asked for.
        r = s.get(f"{proc.url}/v1/member-log", timeout=10)
        assert r.status_code == 200
        assert r.headers[p.ALARM_URL_HEADER] == alarm_url
        r = s.get(f"https://localhost:{proc.port}/v1/health", timeout=10)
        assert r.headers[p.ALARM_URL_HEADER] == f"https://localhost:{alarm_port}"

        # The alarm lane: acked there, after the same hub checks as on the main port.
        r = _alarm(s, alarm_url, hub, range(1, 4))
        assert r.status_code == 200, r.text
        assert r.json()["acked_seq"] == 3 and r.json()["stored"] == 3
        assert p.ALARM_URL_HEADER not in r.headers
        # A renewed certificate's first use, here, makes it current and retires the old one (a transaction of its
        # own: the hub check is otherwise outside any).
        old_cert, old_key = tmp_path / "old.crt", tmp_path / "old.key"
        old_cert.write_bytes(hub.cert.read_bytes())
        old_key.write_bytes(hub.key.read_bytes())
        renew(proc.url, hub.state_dir)
        r = _alarm(hub.session(), alarm_url, hub, range(4, 5))
        assert r.status_code == 200, r.text
        old = hub.session()
        old.cert = (str(old_cert), str(old_key))
        r = _alarm(old, alarm_url, hub, range(5, 6))
        assert r.status_code == 401 and r.json()["error"] == "cert_retired", r.text
        anonymous = session(fleet.state / "ca.crt")
        r = _alarm(anonymous, alarm_url, hub, range(5, 6))
        assert r.status_code == 401 and r.json()["error"] == "no_client_cert"
        fleet.reg.revoke_hub(hub.hub_id, actor=ACTOR)
        assert _alarm(hub.session(), alarm_url, hub, range(5, 6)).status_code == 403

        # Everything else: 404 alarm_listener_only, whoever asks.
        for method, path in [
            ("GET", "/v1/health"),
            ("GET", "/v1/ingest/alarm"),
            ("POST", "/v1/ingest/readings"),
            ("PUT", "/v1/heartbeat"),
            ("GET", "/metrics"),
            ("GET", "/app/"),
        ]:
            r = s.request(method, alarm_url + path, data=b"{}", timeout=10)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"] == "alarm_listener_only"

        # The main port's metrics count what the listener acked, apart from the lane's total.
        admin = session(fleet.state / "ca.crt")
        admin.headers["Authorization"] = f"Bearer {fleet.reg.create_api_token('admin', None, actor=ACTOR)}"
        body = admin.get(f"{proc.url}/metrics", timeout=10).text
        assert metric(body, "kotihub_register_alarm_listener_batches_total") == 2
        assert metric(body, "kotihub_register_ingest_batches_total", lane="alarm") == 2

        # The bulk workers run 10 nice values below the listener, which keeps the supervisor's priority.
        assert proc.proc is not None
        listener = _listener_pid(proc.proc.pid, alarm_port)
        workers = [k for k in worker_pids(proc.proc.pid) if k != listener]
        assert len(workers) == 2
        assert _nice(listener) == _nice(proc.proc.pid)
        assert all(_nice(w) == _nice(proc.proc.pid) + 10 for w in workers), [_nice(w) for w in workers]

        # Killed outright, it is restarted like a worker and serves again.
        os.kill(listener, signal.SIGKILL)
        wait_for_log(proc, "register alarm listener exited with -9; restarting it")
        hub2 = fleet.hub(proc.url, 2)
        enrolled_seen = fleet.reg.hubs(hub2.household_id)[0]["last_seen"]
        deadline = time.monotonic() + 60
        while True:
            try:
                r = _alarm(hub2.session(), alarm_url, hub2, range(1, 2))
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, proc.log.read_text(errors="replace")[-3000:]
                time.sleep(0.05)
        assert r.status_code == 200, r.text
        assert _listener_pid(proc.proc.pid, alarm_port) != listener
        # The hub's last-seen time, written after the ack rather than before the alarm's transaction.
        deadline = time.monotonic() + 30
        while (fleet.reg.hubs(hub2.household_id)[0]["last_seen"] or 0) <= (enrolled_seen or 0):
            assert time.monotonic() < deadline, "last_seen was never written"
            time.sleep(0.05)
    finally:
        proc.stop()


def test_the_alarm_port_needs_postgresql_and_a_port_of_its_own(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "cloud_sync.register.cli", "serve", "--state", str(tmp_path)]
    out = subprocess.run([*base, "--alarm-port", "9443"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "so does the alarm listener" in out.stderr
    out = subprocess.run(
        [*base, "--db", "postgresql+psycopg://x@127.0.0.1:1/x", "--port", "9443", "--alarm-port", "9443"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--alarm-port must differ from --port" in out.stderr
    out = subprocess.run([*base, "--alarm-port", "70000"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "alarm_port must be a TCP port" in out.stderr
