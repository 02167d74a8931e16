"""The alarm connection kept open (cloud_sync/uplink/alarmroute.py, "The alarm connection is kept open"): pinged, a
hub's alarm connection outlives the register's keep-alive and the next alarm goes over it; strangers cannot hold a
connection open that way; a kept connection that died without a word costs an alarm at most ``FIRST_ANSWER_S``
before it goes over a new one; an alarm never waits for a ping on the wire; the uplink's alarm lane pings while
idle. Connections are counted by a TCP proxy between hub and register (tests/support/tcpproxy.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cloud_sync import protocol as p
from cloud_sync.uplink import HubIdentity, Uplink, alarmroute
from cloud_sync.uplink.alarmroute import AlarmClient
from gateway.model import Event, EventKind
from gateway.store import OutboxItem
from tests.integration.test_register import anonymous, event
from tests.integration.test_uplink import T0, running, until, uplink_config
from tests.support.alarm_client import alarm_client
from tests.support.register import RunningRegister, start_register
from tests.support.stores import open_store
from tests.support.tcpproxy import FaultProxy, fault_proxy

KEEP_S = 1.0
"""The register's keep-alive for every other connection in these tests (35 s in production)."""
ALARM_KEEP_S = 60.0


@pytest.fixture
def register(tmp_path: Path) -> Iterator[RunningRegister]:
    r = start_register(tmp_path / "register", keep_alive_s=KEEP_S, alarm_keep_alive_s=ALARM_KEEP_S)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def proxy(register: RunningRegister) -> Iterator[FaultProxy]:
    with fault_proxy(register.port) as proxy:
        yield proxy


def smoke(seq: int) -> list[OutboxItem]:
    return [OutboxItem(seq=seq, ts=T0 + seq, body=event(seq))]


def test_a_pinged_alarm_connection_outlives_the_keep_alive_and_the_next_alarm_goes_over_it(
    register: RunningRegister, proxy: FaultProxy
) -> None:
    hub = register.enroll()
    client = alarm_client(proxy.url, hub.state_dir)
    try:
        client.ping()
        assert (client.pings, client.ping_failures) == (1, 0)
        # Another connection of the hub, opened beside it: its last request was no alarm, so the register closes it
        # after the ordinary keep-alive.
        other = requests.Session()
        other.trust_env, other.verify, other.cert = False, str(hub.ca), (str(hub.cert), str(hub.key))
        assert other.get(f"{proxy.url}/v1/member-log", timeout=10).status_code == 200
        assert (proxy.opened, proxy.open) == (2, 2)
        deadline = time.monotonic() + 30
        while proxy.open > 1:
            assert time.monotonic() < deadline, "the register kept the other connection open"
            time.sleep(0.05)
        assert client.main.kept_alive(alarmroute.KEEP_ALIVE_DEFAULT_S) and client.summary()["kept_open"]
        ack = client.ingest(hub.hub_id, "alarm", smoke(1))
        assert (ack.acked_seq, ack.stored) == (1, 1)
        # The ack says nothing of the keep-alive: what the ping's reply said still holds.
        assert client.main.kept_s == ALARM_KEEP_S
        # Over the pinged connection, idle longer than the ordinary keep-alive by now: no new connection.
        assert proxy.opened == 2 and proxy.open == 1
        assert client.reopened == 0
        other.close()
    finally:
        client.close()
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == [1]


def test_the_register_says_how_long_it_keeps_an_alarm_connection_and_strangers_get_no_longer(
    register: RunningRegister, proxy: FaultProxy
) -> None:
    hub = register.enroll()
    s = requests.Session()
    s.trust_env, s.verify, s.cert = False, str(hub.ca), (str(hub.cert), str(hub.key))
    r = s.get(f"{register.url}{p.ALARM_PING_PATH}", timeout=10)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["Keep-Alive"] == f"timeout={int(ALARM_KEEP_S)}"

    # Without a certificate: refused, and the connection is closed after the ordinary keep-alive, not the alarm's.
    stranger = anonymous(register)
    r = stranger.get(f"{proxy.url}{p.ALARM_PING_PATH}", timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "no_client_cert"
    assert proxy.open == 1
    started = time.monotonic()
    while proxy.open:
        assert time.monotonic() - started < ALARM_KEEP_S / 2, "a stranger's connection was kept like an alarm's"
        time.sleep(0.05)
    stranger.close()
    s.close()


def test_an_alarm_on_a_kept_connection_that_died_silently_goes_over_a_new_one_soon(
    register: RunningRegister, proxy: FaultProxy
) -> None:
    hub = register.enroll()
    client = alarm_client(proxy.url, hub.state_dir)
    try:
        client.ping()
        proxy.stall()  # the NAT forgot the connection: what is written into it goes nowhere, and nothing says so
        started = time.monotonic()
        ack = client.ingest(hub.hub_id, "alarm", smoke(1))
        took = time.monotonic() - started
        assert (ack.acked_seq, ack.stored) == (1, 1)
        assert client.reopened == 1 and proxy.opened == 2
        # The first answer's bound, then a new connection; without it, the read timeout (30 s here).
        assert alarmroute.FIRST_ANSWER_S <= took < alarmroute.FIRST_ANSWER_S + 10, took
    finally:
        client.close()
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == [1]


def test_an_alarm_lost_in_a_connection_that_died_after_the_register_read_it_is_stored_once(
    register: RunningRegister, proxy: FaultProxy
) -> None:
    """The register got the alarm and committed it, its answer was lost in the dead connection: the alarm's second
    try is a duplicate, acknowledged, and stored once."""
    hub = register.enroll()
    client = alarm_client(proxy.url, hub.state_dir)
    try:
        client.ping()
        proxy.cut_replies, proxy.request_bytes = 1, 0  # the next answer is dropped, its connection closed
        ack = client.ingest(hub.hub_id, "alarm", smoke(1))
        assert (ack.acked_seq, ack.stored, ack.duplicates) == (1, 0, 1)
        assert client.reopened == 1 and proxy.cut_count == 1
    finally:
        client.close()
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == [1]


async def test_the_alarm_lane_pings_while_idle_and_an_alarm_does_not_wait_for_a_ping_on_the_wire(
    register: RunningRegister, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarmroute, "PING_TIMEOUT_S", 120.0)  # a stalled ping would hold its thread that long
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        uplink = Uplink(store, uplink_config(proxy.url, alarm_keepalive_s=0.2), HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: uplink.alarm is not None and uplink.alarm.pings >= 3, what="three pings")
            alarm = uplink.alarm
            assert alarm is not None and alarm.ping_failures == 0
            summary: dict[str, Any] = uplink.summary()["alarm_connection"]
            assert summary["pings"] >= 3 and summary["url"] == proxy.url

            # Every connection open now goes silent; the alarm lane's next ping hangs in it.
            proxy.stall()
            await until(lambda: _pinging_for(alarm, 1.0), what="a ping hanging in the silent connection")
            await store.add_event(Event(device_id="mqtt:smoke1", kind=EventKind.SMOKE, state="smoke", ts=T0))
            took = await until(lambda: uplink.status["alarm"].cursor == 1, what="the alarm's ack")
            # Acknowledged over a new connection while that ping still hung: it would hang until its timeout.
            assert took < alarmroute.PING_TIMEOUT_S / 4 and alarm.ping_failures == 0
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == [1]


def _pinging_for(alarm: AlarmClient, seconds: float) -> bool:
    started = alarm.ping_started
    return started is not None and time.monotonic() - started > seconds


def test_an_older_register_without_pings_is_not_pinged_again_for_an_hour(
    register: RunningRegister, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = register.enroll()
    client = alarm_client(register.url, hub.state_dir)
    monkeypatch.setattr(p, "ALARM_PING_PATH", "/v1/no-such-ping")
    try:
        client.ping()
        due = client.ping_due(60.0)
        assert due is not None and due - time.monotonic() > alarmroute.PINGS_REFUSED_REST_S - 60
        assert client.ping_failures == 0 and client.route.target() is None
    finally:
        client.close()
