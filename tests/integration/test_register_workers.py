"""Several register processes on one PostgreSQL database: command wake-ups cross them within a second (LISTEN/
NOTIFY, with the database re-read set to 20 s so that only a notification can be that fast), ingest through all of
them deduplicates on (hub, lane, seq), and ``serve --workers N`` sums its workers' metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_register import INGEST_HEADERS, batch
from tests.support.postgres import free_port
from tests.support.register import HubIdentity
from tests.support.register_fleet import ACTOR, Fleet, metric, session, wait_for_log, worker_pids
from tests.support.register_proc import RegisterProcess

SLOW_POLL = ("--command-poll", "20")


class Poll:
    """A hub's command long-poll in a thread; ``woken_after`` is how long after ``queued_at`` it answered."""

    def __init__(self, url: str, hub: HubIdentity) -> None:
        self.got: list[Any] = []
        self.answered_at = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, hub), daemon=True)
        self.thread.start()

    def _run(self, url: str, hub: HubIdentity) -> None:
        try:
            self.got = hub.session().get(f"{url}/v1/commands", params={"wait": 25}, timeout=60).json()
        finally:
            self.answered_at = time.monotonic()
            self.done.set()


def _until_listening(postgres_url: str, processes: int, timeout: float = 60.0) -> None:
    """Until ``processes`` register processes hold their LISTEN connection on the test's database."""
    dsn = postgres_url.replace("+psycopg", "")
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN kotihub_%'"
            ).fetchone()
        if row is not None and row[0] >= processes:
            return
        assert time.monotonic() < deadline, f"{row} register processes listening, not {processes}"
        time.sleep(0.1)


def test_a_command_queued_through_one_process_wakes_a_long_poll_on_another(
    tmp_path: Path, postgres_url: str, fleet: Fleet
) -> None:
    a = RegisterProcess(fleet.state, {}, db_url=postgres_url, args=SLOW_POLL)
    b = RegisterProcess(fleet.state, {}, db_url=postgres_url, args=SLOW_POLL)
    a.start()
    b.start()
    try:
        # Both listening (each waits up to 10 s for it before it serves, then serves anyway and retries after
        # --command-poll: on a machine busy enough that may come later).
        _until_listening(postgres_url, 2)
        hub = fleet.hub(a.url, 1)
        for _ in range(3):  # and again: each wake-up is a notification, none a re-read
            poll = Poll(b.url, hub)
            assert not poll.done.wait(1.0), poll.got  # waiting on b: nothing is pending
            queued_at = time.monotonic()
            cid = fleet.queue(a.url, hub)
            assert poll.done.wait(10)
            assert poll.answered_at - queued_at < 1.0
            assert [c["id"] for c in poll.got] == [cid]
            r = hub.session().post(f"{a.url}/v1/commands/{cid}/result", json={"status": "done"}, timeout=10)
            assert r.status_code == 200
    finally:
        a.stop()
        b.stop()


def test_serve_with_three_workers(tmp_path: Path, postgres_url: str, fleet: Fleet) -> None:
    proc = RegisterProcess(fleet.state, {}, db_url=postgres_url, args=(*SLOW_POLL, "--workers", "3"))
    proc.start()
    try:
        wait_for_log(proc, "3 workers listening")
        hubs = [fleet.hub(proc.url, n) for n in range(4)]

        # Every hub sends the same batch three times at once, each on a connection of its own (the kernel spreads
        # connections over the workers): each item is stored once.
        acks: list[dict[str, Any]] = []
        refused: list[str] = []
        lock = threading.Lock()

        def send(hub: HubIdentity) -> None:
            r = hub.session().post(
                f"{proc.url}/v1/ingest/readings", data=batch(hub, "readings", range(20)), headers=INGEST_HEADERS
            )
            with lock:
                if r.status_code == 200:
                    acks.append(r.json())
                else:
                    refused.append(f"{r.status_code} {r.text}")

        senders = [threading.Thread(target=send, args=(h,)) for h in hubs for _ in range(3)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(60)
        assert not refused and len(acks) == 12, (refused, proc.log.read_text(errors="replace")[-4000:])
        assert sum(a["stored"] for a in acks) == 4 * 20
        assert sum(a["duplicates"] for a in acks) == 2 * 4 * 20
        assert {a["acked_seq"] for a in acks} == {19}
        for h in hubs:
            assert [seq for seq, _ in _items(fleet, h)] == list(range(20))

        # Long-polls on four connections, commands queued on others: all woken by notification.
        polls = [Poll(proc.url, h) for h in hubs]
        assert not any(p.done.wait(0.25) for p in polls)
        queued = {}
        for h, p in zip(hubs, polls, strict=True):
            queued_at = time.monotonic()
            queued[h.hub_id] = fleet.queue(proc.url, h)
            assert p.done.wait(10)
            assert p.answered_at - queued_at < 1.0
            assert [c["id"] for c in p.got] == [queued[h.hub_id]]

        # A scrape answered by any one worker counts the ingest of all of them.
        admin = session(fleet.state / "ca.crt")
        admin.headers["Authorization"] = f"Bearer {fleet.reg.create_api_token('admin', None, actor=ACTOR)}"
        body = admin.get(f"{proc.url}/metrics", timeout=10).text
        assert metric(body, "kotihub_register_ingest_items_total", lane="readings", outcome="stored") == 80
        assert metric(body, "kotihub_register_ingest_items_total", lane="readings", outcome="duplicate") == 160

        # A worker killed outright is replaced, and the register goes on waking long-polls.
        assert proc.proc is not None
        before = worker_pids(proc.proc.pid)
        assert len(before) == 3
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(after := worker_pids(proc.proc.pid)) != 3 or before[0] in after:
            assert time.monotonic() < deadline, proc.log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        wait_for_log(proc, "restarting it")
        hub = hubs[0]
        r = hub.session().post(f"{proc.url}/v1/commands/{queued[hub.hub_id]}/result", json={"status": "done"})
        assert r.status_code == 200
        for _ in range(3):  # three connections: most likely one of them on the new worker
            p = Poll(proc.url, hub)
            assert not p.done.wait(0.5), p.got
            queued_at = time.monotonic()
            cid = fleet.queue(proc.url, hub)
            assert p.done.wait(10)
            assert p.answered_at - queued_at < 1.0
            assert [c["id"] for c in p.got] == [cid]
            r = hub.session().post(f"{proc.url}/v1/commands/{cid}/result", json={"status": "done"}, timeout=10)
            assert r.status_code == 200
    finally:
        proc.stop()
    assert proc.proc is None


def _items(fleet: Fleet, hub: HubIdentity) -> list[tuple[int, dict[str, Any]]]:
    from cloud_sync.register import ingest

    return ingest.items(fleet.reg, hub.hub_id, "readings")


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cloud_sync.register.cli", "serve", "--state", str(tmp_path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "several workers need PostgreSQL" in out.stderr


def _start_refused(cmd: list[str]) -> tuple[int, str]:
    """Runs a ``serve`` expected to be refused: its exit status and stderr. In a session of its own, so that if the
    start is not refused its workers are stopped with it at the timeout."""
    serve = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
    return serve.returncode, stderr


def _holder(port: int, *, reuseport: bool) -> socket.socket:
    """A listener on the port, as another register's worker (``reuseport``) or any other program holds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    return sock


@pytest.mark.parametrize(
    ("held", "reuseport"),
    [("--port", True), ("--port", False), ("--alarm-port", True)],
    ids=["port-by-a-register", "port-by-another-program", "alarm-port-by-a-register"],
)
def test_a_port_another_process_listens_on_is_refused_before_anything_starts(
    tmp_path: Path, postgres_url: str, held: str, reuseport: bool
) -> None:
    """Without the probe a second ``serve --workers`` of the same user joined the first one's SO_REUSEPORT group
    and took half its hubs: here it would not exit at all, and the test would time out."""
    port, alarm_port = free_port(), free_port()
    state = tmp_path / "state"
    # What a running register sharing this state directory keeps there, which a refused start must leave alone.
    counters = state / "metrics" / "counter_4242.db"
    counters.parent.mkdir(parents=True)
    counters.write_bytes(b"the running register's counters")
    cmd = [sys.executable, "-m", "cloud_sync.register.cli", "serve", "--state", str(state), "--db", postgres_url]
    cmd += ["--port", str(port), "--workers", "2", "--alarm-port", str(alarm_port)]
    taken = port if held == "--port" else alarm_port
    with _holder(taken, reuseport=reuseport) as holder:
        returncode, stderr = _start_refused(cmd)
        assert returncode == 2, stderr[-2000:]
        assert f"{held} {taken} on 127.0.0.1 is held by another process" in stderr
        assert "nothing was started" in stderr
        # Nothing joined the holder's port: a connection still reaches the holder.
        with socket.create_connection(("127.0.0.1", taken), timeout=10):
            holder.settimeout(10)
            holder.accept()[0].close()
    assert counters.read_bytes() == b"the running register's counters"
    assert not (state / "ca.key").exists(), "the start went on past the probe"


def test_workers_start_again_at_once_on_the_port_they_just_left(
    tmp_path: Path, postgres_url: str, fleet: Fleet
) -> None:
    """The probe does not mistake the connections a stopped register leaves behind (TIME_WAIT) for a holder."""
    proc = RegisterProcess(fleet.state, {}, db_url=postgres_url, args=("--workers", "2"))
    proc.start()
    try:
        wait_for_log(proc, "2 workers listening")
        hub = fleet.hub(proc.url, 1)
        sessions = [hub.session() for _ in range(4)]
        for s in sessions:  # open keep-alive connections, on both workers most likely
            assert s.get(f"{proc.url}/v1/health", timeout=10).status_code == 200
        proc.stop()
        proc.start()
        wait_for_log(proc, "2 workers listening")
        assert hub.session().get(f"{proc.url}/v1/health", timeout=10).status_code == 200
        assert "held by another process" not in proc.log.read_text(errors="replace")
    finally:
        proc.stop()


# Holds the claim as a register's parent does (an abstract AF_UNIX name), in a process of its own to SIGKILL.
_CLAIM_HOLDER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(b"\\0kotihub-register:127.0.0.1:" + sys.argv[1].encode())
print("held", flush=True)
sys.stdin.read()
"""


def _serve_cmd(state: Path, postgres_url: str, port: int, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "cloud_sync.register.cli", "serve", "--state", str(state), "--db", postgres_url]
    return [*cmd, "--port", str(port), "--workers", "2", *extra]


@pytest.mark.parametrize("held", ["--port", "--alarm-port"])
def test_a_claimed_port_is_refused_until_the_claim_holder_dies(
    tmp_path: Path, postgres_url: str, fleet: Fleet, held: str
) -> None:
    """Nothing listens on the port, so only the claim can refuse the start; SIGKILL frees the claim with its
    holder, and no lock file is left behind to clean up."""
    port, alarm_port = free_port(), free_port()
    taken = port if held == "--port" else alarm_port
    holder = subprocess.Popen(
        [sys.executable, "-c", _CLAIM_HOLDER, str(taken)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        returncode, stderr = _start_refused(
            _serve_cmd(fleet.state, postgres_url, port, "--alarm-port", str(alarm_port))
        )
        assert returncode == 2, stderr[-2000:]
        assert f"{held} {taken} on 127.0.0.1 is held by another process" in stderr
        assert "nothing was started" in stderr
        assert not (fleet.state / "metrics").exists(), "the start went on past the claim"
    finally:
        holder.kill()
        holder.wait(10)
    proc = RegisterProcess(
        fleet.state, {}, db_url=postgres_url, port=port, args=("--workers", "2", "--alarm-port", str(alarm_port))
    )
    proc.start()
    try:
        wait_for_log(proc, "alarm listener on")
        assert "held by another process" not in proc.log.read_text(errors="replace")
    finally:
        proc.stop()


def test_of_two_registers_started_at_once_on_one_port_exactly_one_serves(tmp_path: Path, postgres_url: str) -> None:
    """The probe alone let both through: it binds and closes at once, and the workers bind seconds later."""
    state = tmp_path / "state"
    for round_ in range(3):
        port = free_port()
        logs = [tmp_path / f"serve-{round_}-{i}.log" for i in range(2)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for log in logs:  # back to back: both are still importing when the other one reaches the claim
                with open(log, "wb") as f:
                    cmd = _serve_cmd(state, postgres_url, port)
                    procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + 90
            # Until one has exited and the other serves, both have exited, or (both serving) the deadline.
            while time.monotonic() < deadline and not all(p.poll() is not None for p in procs):
                if any(p.poll() is not None for p in procs) and any(
                    "2 workers listening" in log.read_text(errors="replace") for log in logs
                ):
                    break
                time.sleep(0.05)
            codes = [p.poll() for p in procs]
            texts = [log.read_text(errors="replace") for log in logs]
            assert sorted(codes, key=str) == [2, None], (codes, [t[-2000:] for t in texts])
            loser, winner = (0, 1) if codes[0] == 2 else (1, 0)
            assert f"--port {port} on 127.0.0.1 is held by another process" in texts[loser]
            assert "2 workers listening" in texts[winner]
            assert "workers listening" not in texts[loser]
            procs[winner].terminate()
            assert procs[winner].wait(60) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
