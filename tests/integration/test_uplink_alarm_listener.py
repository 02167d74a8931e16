"""The hub's alarm lane and the register's alarm listener: the hub learns the listener from the main port's replies
and sends its alarms there; with the listener killed the next alarm is acked through the main URL at once, and the
listener is used again once it is back. An old register (no announcement) and an old hub (ignores it) keep working,
and a hostile announcement is refused and logged once. Which listener served an alarm is read from the register's
metrics, never from timing."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from cloud_sync import protocol as p
from cloud_sync.register import ingest
from cloud_sync.uplink import HubIdentity, Uplink, alarmroute
from gateway.model import Event, EventKind
from tests.integration.test_register import INGEST_HEADERS, batch, event
from tests.integration.test_register_alarm_listener import _listener_pid
from tests.integration.test_uplink import T0, running, until, uplink_config
from tests.support.postgres import free_port
from tests.support.register import RunningRegister, start_register
from tests.support.register_fleet import ACTOR, Fleet, metric, session, wait_for_log
from tests.support.register_proc import RegisterProcess
from tests.support.stores import open_store


def smoke(i: int) -> Event:
    return Event(device_id="mqtt:smoke1", kind=EventKind.SMOKE, state="smoke" if i % 2 else "clear", ts=T0 + i)


class Counts:
    """Alarm batches the whole register acked, and those the alarm listener acked, from its metrics."""

    def __init__(self, url: str, fleet: Fleet) -> None:
        self.url = url
        self.admin = session(fleet.state / "ca.crt")
        self.admin.headers["Authorization"] = f"Bearer {fleet.reg.create_api_token('admin', None, actor=ACTOR)}"

    def __call__(self) -> tuple[int, int]:
        body = self.admin.get(f"{self.url}/metrics", timeout=10).text
        total = metric(body, "kotihub_register_ingest_batches_total", lane="alarm")
        listener = metric(body, "kotihub_register_alarm_listener_batches_total")
        return int(total), int(listener)


def start_with_listener(fleet: Fleet, postgres_url: str) -> tuple[RegisterProcess, int]:
    """A register of one worker and an alarm listener, both listening; returns it and the listener's port."""
    alarm_port = free_port()
    proc = RegisterProcess(
        fleet.state, {}, db_url=postgres_url, args=("--workers", "1", "--alarm-port", str(alarm_port))
    )
    proc.start()
    try:
        wait_for_log(proc, "alarm listener on")
    except BaseException:
        proc.stop()
        raise
    return proc, alarm_port


async def test_alarms_go_to_the_listener_and_fall_back_at_once_when_it_is_down(
    tmp_path: Path, postgres_url: str, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarmroute, "RETRY_S", 0.5)
    proc, alarm_port = start_with_listener(fleet, postgres_url)
    try:
        alarm_url = f"https://127.0.0.1:{alarm_port}"
        counts = Counts(proc.url, fleet)
        hub = fleet.hub(proc.url, 1)

        # An old hub, which ignores the announcement: its alarm on the main port is acked as ever.
        r = hub.session().post(
            f"{proc.url}/v1/ingest/alarm", data=batch(hub, "alarm", [1], body=event), headers=INGEST_HEADERS
        )
        assert r.status_code == 200 and r.json()["acked_seq"] == 1
        assert r.headers[p.ALARM_URL_HEADER] == alarm_url
        assert counts() == (1, 0)

        async with open_store(hub.state_dir) as store:
            await store.add_event(smoke(0))  # seq 1, which the register holds already (sent above)
            uplink = Uplink(store, uplink_config(proc.url), HubIdentity(hub.state_dir))
            async with running(uplink):
                await until(lambda: uplink.alarm_route.url == alarm_url, what="the hub to learn the alarm URL")
                await until(lambda: uplink.status["alarm"].cursor == 1, what="the first alarm's ack")

                await store.add_event(smoke(1))
                await until(lambda: uplink.status["alarm"].cursor == 2, what="the alarm through the listener")
                assert counts()[1] >= 1  # the listener acked it (seq 1 may have gone there too, as a duplicate)
                through_listener = counts()

                # The listener killed, its supervisor held still so it cannot come back before the alarm is sent.
                assert proc.proc is not None
                listener = _listener_pid(proc.proc.pid, alarm_port)
                os.kill(proc.proc.pid, signal.SIGSTOP)
                try:
                    os.kill(listener, signal.SIGKILL)
                    await store.add_event(smoke(2))
                    await until(lambda: uplink.status["alarm"].cursor == 3, what="the alarm through the main URL")
                    after = counts()
                    assert after == (through_listener[0] + 1, through_listener[1]), (through_listener, after)
                finally:
                    os.kill(proc.proc.pid, signal.SIGCONT)

                # Restarted by the supervisor, and used again once the hub's pause is over.
                wait_for_log(proc, "register alarm listener exited with -9; restarting it")
                await until(lambda: _listening(alarm_port), what="the listener back")
                await until(lambda: uplink.alarm_route.target() == alarm_url, what="the hub's pause")
                await store.add_event(smoke(3))
                await until(lambda: uplink.status["alarm"].cursor == 4, what="the alarm after the restart")
                assert counts() == (after[0] + 1, after[1] + 1)
        assert [seq for seq, _ in ingest.items(fleet.reg, hub.hub_id, "alarm")] == [1, 2, 3, 4]
    finally:
        proc.stop()


async def test_an_alarm_whose_listener_lost_its_database_connection_is_acked_through_the_main_port(
    tmp_path: Path, postgres_url: str, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener hands out pooled connections untested (no round trip before each alarm): one PostgreSQL dropped
    fails that alarm there, and the hub has it acked through the main port at once; the listener then serves again."""
    monkeypatch.setattr(alarmroute, "RETRY_S", 0.5)
    proc, _ = start_with_listener(fleet, postgres_url)
    try:
        counts = Counts(proc.url, fleet)
        hub = fleet.hub(proc.url, 1)
        async with open_store(hub.state_dir) as store:
            uplink = Uplink(store, uplink_config(proc.url), HubIdentity(hub.state_dir))
            async with running(uplink):
                await until(lambda: uplink.alarm_route.url is not None, what="the hub to learn the alarm URL")
                await store.add_event(smoke(1))
                await until(lambda: uplink.status["alarm"].cursor == 1, what="the first alarm")
                assert counts() == (1, 1)

                # Every register connection to the database dropped, as a PostgreSQL restart does.
                with fleet.reg.engine.connect() as conn:
                    conn.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                await store.add_event(smoke(2))
                await until(lambda: uplink.status["alarm"].cursor == 2, what="the alarm through the main port")
                assert counts() == (2, 1)
                assert "500" in (uplink.alarm_route.last_failure or ""), uplink.alarm_route.last_failure

                await until(lambda: uplink.alarm_route.target() is not None, what="the hub's pause")
                await store.add_event(smoke(3))
                await until(lambda: uplink.status["alarm"].cursor == 3, what="the alarm through the listener again")
                assert counts() == (3, 2)
        assert [seq for seq, _ in ingest.items(fleet.reg, hub.hub_id, "alarm")] == [1, 2, 3]
    finally:
        proc.stop()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_an_old_register_announces_nothing_and_alarms_go_to_the_main_url(tmp_path: Path) -> None:
    register = start_register(tmp_path / "register")
    try:
        hub = register.enroll()
        async with open_store(hub.state_dir) as store:
            uplink = Uplink(store, uplink_config(register.url), HubIdentity(hub.state_dir))
            async with running(uplink):
                await store.add_event(smoke(1))
                # Acked: the hub has read the register's reply (which carried no announcement).
                await until(lambda: uplink.status["alarm"].cursor == 1, what="the alarm's ack")
                assert len(register.items(hub.hub_id, "alarm")) == 1
                assert uplink.replies.last_ok_at is not None
                assert uplink.alarm_route.url is None
                assert uplink.summary()["alarm_url"] is None
    finally:
        register.close()


class Announcer:
    """ASGI wrapper: every reply of the register carries ``value`` as its alarm URL (a hostile or broken register)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = b""
        self.replies = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def announce(message: Any) -> None:
            if message["type"] == "http.response.start" and self.value:
                self.replies += 1
                headers = [*message.get("headers", ()), (p.ALARM_URL_HEADER.lower().encode(), self.value)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, announce)


class AnnouncingRegister(RunningRegister):
    announcer: Announcer

    def start(self) -> None:
        import threading

        from cloud_sync.register.server import ReadyServer, build_config

        config = build_config(self.settings, port=self.port, registry=self.reg, graceful_s=1)
        self.announcer = Announcer(config.app)
        config.app = self.announcer
        self._server = ReadyServer(config)
        self._thread = threading.Thread(target=self._server.run, name="register", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(30):
            raise RuntimeError("register did not start")


@pytest.mark.parametrize("value", ["https://evil.example:8444", "http://127.0.0.1:{port}", "https://127.0.0.1"])
async def test_a_bad_alarm_url_is_refused_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    (tmp_path / "register").mkdir()
    register = AnnouncingRegister(tmp_path / "register")
    register.start()
    register.announcer.value = value.format(port=free_port()).encode()
    try:
        hub = register.enroll()
        async with open_store(hub.state_dir) as store:
            uplink = Uplink(store, uplink_config(register.url), HubIdentity(hub.state_dir))
            with caplog.at_level(logging.WARNING, logger="cloud_sync.uplink.alarmroute"):
                async with running(uplink):
                    for i in range(3):
                        await store.add_event(smoke(i))
                        await until(lambda i=i: uplink.status["alarm"].cursor == i + 1, what="the alarm")
                    await until(lambda: uplink.alarm_route.refused >= 3, what="several refused announcements")
        assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == [1, 2, 3]
        assert uplink.alarm_route.url is None
        refusals = [r for r in caplog.records if "refused the alarm URL" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
    finally:
        register.close()
