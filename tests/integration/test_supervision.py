"""The daemon stays up: register replies of the wrong shape, type or content type while a smoke alarm comes in; a
store writer that blocks; SIGTERM in under 2 s with the register up or down."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene
from tests.integration.test_daemon import HubProcess, stored, wait_until
from tests.support.register import RunningRegister

# What a broken register, a captive proxy or version skew answers with a 200: each must be a counted, retried error.
BAD_REPLIES: list[tuple[str, str, bytes]] = [
    ("wrong type", "application/json", b'{"lane":"alarm","acked_seq":"7","stored":1,"duplicates":0}'),
    ("missing field", "application/json", b'{"lane":"alarm"}'),
    ("html", "text/html; charset=utf-8", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("truncated", "application/json", b'{"lane":"alarm","acked_se'),
    ("garbage", "application/json", b"\x00\xff\xfe not json at all"),
    ("not an object", "application/json", b"[1, 2, 3]"),
]


class BadReplies:
    """ASGI wrapper: answers the next ingest and command-poll requests with :data:`BAD_REPLIES` (and one cut body)
    in turn, then lets the real register answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.plan: list[str] = []
        self.sent: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if self.plan and (path.startswith("/v1/ingest/") or path == "/v1/commands"):
            kind = self.plan.pop(0)
            self.sent.append(kind)
            if kind == "cut":
                # Promises 200 bytes, sends 20: the connection ends mid-body.
                headers = [(b"content-type", b"application/json"), (b"content-length", b"200")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b'{"lane":"alarm","ack', "more_body": True})
                raise ConnectionResetError("test: body cut")
            _, ctype, body = next(b for b in BAD_REPLIES if b[0] == kind)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype.encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class BadRegister(RunningRegister):
    bad: BadReplies

    def wrap_app(self, app: Any) -> Any:
        self.bad = BadReplies(app)
        return self.bad


@pytest.fixture
def bad_register(tmp_path: Path) -> Iterator[BadRegister]:
    (tmp_path / "register").mkdir()
    r = BadRegister(tmp_path / "register")
    r.start()
    try:
        yield r
    finally:
        r.close()


class SyncedHub(HubProcess):
    def __init__(self, root: Path, broker: MosquittoBroker, register_url: str, extra: str = "") -> None:
        super().__init__(
            root,
            broker,
            f'[uplink]\nenabled = true\nregister_url = "{register_url}"\nbackoff_initial = 0.05\n'
            "backoff_max = 0.3\ncommand_poll_wait = 20.0\n"
            # What reaches the register is what these test, not how long readings linger (unless a test says).
            + ("" if "readings_linger_s" in extra else "readings_linger_s = 5.0\n")
            + extra,
        )


def provisioned(tmp_path: Path, broker: MosquittoBroker, register: RunningRegister, extra: str = "") -> SyncedHub:
    household = register.create_household("Virtanen")
    register.add_member(household, "Aino")
    (tmp_path / "hub").mkdir()
    hub = SyncedHub(tmp_path / "hub", broker, register.url, extra)
    token = register.enroll_token(household)
    code = register.pairing_code(household)
    assert code is not None
    done = hub.cli(
        "provision", "--register", register.url, "--token", token, "--ca-file", str(register.ca_file),
        "--pairing-code", code,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return hub


def test_bad_register_replies_are_counted_and_retried_while_the_alarm_gets_through(
    tmp_path: Path, mosquitto: MosquittoBroker, bad_register: BadRegister
) -> None:
    hub = provisioned(tmp_path, mosquitto, bad_register)
    plan = [kind for kind, _, _ in BAD_REPLIES] * 2 + ["cut"]
    bad_register.bad.plan = list(plan)
    hub.start()
    try:
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
        # The alarm is committed on the hub whatever the register answers.
        wait_until(lambda: hub.cli_json("status")["counters"]["alarms"] > 0, what="the smoke alarm accepted")
        wait_until(lambda: not bad_register.bad.plan, timeout=60, what="every bad reply to be served")
        hub_id = HubIdentity(hub.state).hub_id()
        wait_until(
            lambda: [b for _, b in bad_register.items(hub_id, "alarm") if b["kind"] == "smoke"],
            timeout=30,
            what="the alarm in the register once the replies are good again",
        )
        status = hub.cli_json("status")
        assert status["drivers"]["mqtt"]["state"] == "running"
        assert status["drivers"]["mqtt"]["restarts"] == 0
        # Absorbed by the retry loops: no uplink loop had to be restarted.
        assert all(t["restarts"] == 0 for t in status["tasks"].values()), status["tasks"]
        replies = status["uplink"]["replies"]
        assert replies["bad_replies"] >= len(plan) - 1  # the cut body is a network error, not a bad reply
        text = hub.cli("status").stdout
        assert "replies of the wrong shape" in text
        alarms = [b for _, b in bad_register.items(hub_id, "alarm")]
        assert len(alarms) == len({(b["device_id"], b["ts"], b["state"]) for b in alarms})  # once each
        code, log = hub.stop(signal.SIGTERM)
        assert code == 0, log
        assert "Traceback" not in log
        assert "bad reply from the register" in log
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()


def test_sigterm_sends_the_readings_that_linger_first(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister
) -> None:
    """A minute's linger: the scene's readings wait on the hub; the stop sends them before the loops end, still in
    under 2 s."""
    hub = provisioned(tmp_path, mosquitto, register, extra="readings_linger_s = 60.0\n")
    hub.start()
    try:
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
        hub_id = HubIdentity(hub.state).hub_id()

        def lingering() -> int:
            sync = hub.cli_json("sync")
            return int(sync["depth"]["readings"]) if sync["lanes"]["readings"]["lingering"] else 0

        wait_until(lambda: lingering() > 0, what="the scene's readings lingering")
        waiting = lingering()
        assert waiting > 0 and register.items(hub_id, "readings") == []
        elapsed, code, log = timed_stop(hub)
        assert code == 0, log
        assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s"
        sent = [seq for seq, _ in register.items(hub_id, "readings")]
        assert len(sent) >= waiting and sent == list(range(1, len(sent) + 1))
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()


def timed_stop(hub: HubProcess) -> tuple[float, int, str]:
    assert hub.proc is not None
    started = time.monotonic()
    code, log = hub.stop(signal.SIGTERM)
    return time.monotonic() - started, code, log


@pytest.mark.parametrize("register_state", ["up", "down"])
def test_sigterm_stops_the_hub_in_under_two_seconds(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister, register_state: str
) -> None:
    hub = provisioned(tmp_path, mosquitto, register)
    hub.start()
    try:
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
        wait_until(lambda: hub.cli_json("status")["counters"]["alarms"] > 0, what="the smoke alarm accepted")
        accepted = hub.cli_json("status")["counters"]["readings_accepted"]
        hub_id = HubIdentity(hub.state).hub_id()
        wait_until(lambda: alarm_synced(register, hub_id), what="the alarm synced")
        if register_state == "down":
            register.stop()
            asyncio.run(publish_scene(mosquitto.host, mosquitto.port, seed=5))
            wait_until(lambda: hub.cli_json("sync")["lanes"]["readings"]["last_error"], what="the uplink noticing")
        else:
            # A long-poll for commands is in flight (20 s wait): it must not hold the stop.
            wait_until(lambda: hub.cli_json("status")["uplink"]["lanes"], what="the uplink running")
        elapsed, code, log = timed_stop(hub)
        assert code == 0, log
        assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s"
        assert "Traceback" not in log
        assert "stopped; the store is flushed" in log
        readings, _ = stored(hub.state)
        assert len(readings) >= accepted
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()


def alarm_synced(register: RunningRegister, hub_id: str) -> bool:
    return any(b["kind"] == "smoke" for _, b in register.items(hub_id, "alarm"))


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket collecting what the daemon says, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def pings_since(self, t: float) -> int:
        return sum(1 for at, m in list(self.messages) if at >= t and "WATCHDOG=1" in m)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_a_blocked_store_writer_starves_the_systemd_watchdog_and_a_restart_recovers(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "600000")  # pings every 0.3 s while healthy
    hub = HubProcess(tmp_path, mosquitto, "[supervision]\nwriter_stall = 2.0\n")
    hub.start()
    try:
        assert hub.proc is not None
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
        wait_until(lambda: hub.cli_json("status")["counters"]["alarms"] > 0, what="first alarm")
        alarms_before = hub.cli_json("status")["counters"]["alarms"]
        healthy_since = time.monotonic()
        wait_until(lambda: notify.pings_since(healthy_since) >= 3, what="watchdog pings while healthy")
        # Another process holds the database's write lock: the writer thread blocks inside its commit (SQLite's
        # busy wait), exactly as on a hung disk. The event loop itself stays free.
        blocker = sqlite3.connect(hub.state / "kotihub.db", timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            asyncio.run(publish_scene(mosquitto.host, mosquitto.port, seed=3))
            wait_until(
                lambda: hub.cli_json("status")["store"]["writer_heartbeat_age"] > 2.5, what="the writer to stall"
            )
            starved_since = time.monotonic()
            wait_until(lambda: time.monotonic() - starved_since > 2.0, what="two seconds")  # a window to watch
            assert notify.pings_since(starved_since) == 0, "the watchdog was fed while the writer was stuck"
            status = hub.cli_json("status")  # the loop still answers: it is the writer that is stuck
            assert status["store"]["writer_heartbeat_age"] > 2.0
            # systemd's WatchdogSec has passed without a ping: it kills the hub (SIGABRT) and starts it again.
            hub.proc.send_signal(signal.SIGABRT)
            hub.proc.wait(timeout=15)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "store writer unhealthy" in hub.log.read_text()
        hub.start()
        restarted = time.monotonic()
        wait_until(lambda: notify.pings_since(restarted) >= 3, what="watchdog pings after the restart")
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port, seed=4))
        wait_until(lambda: hub.cli_json("status")["counters"]["alarms"] > 0, what="alarms after the restart")
        code, log = hub.stop(signal.SIGTERM)
        assert code == 0, log
        _, alarms = stored(hub.state)
        assert len(alarms) >= alarms_before  # everything accepted before the hang is still there
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()
        notify.close()
