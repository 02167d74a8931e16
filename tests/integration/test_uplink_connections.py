"""What a hub holds open to the register: the alarm lane, the command long-poll, and one connection the bulk lanes
take turns on — three at most while every lane is busy, and the alarm still never waits behind bulk."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cloud_sync import protocol as p
from cloud_sync.uplink import HubIdentity, Uplink
from gateway.model import Event, EventKind
from tests.integration.test_uplink import (
    T0,
    assert_exactly_once,
    produce,
    readings,
    running,
    until,
    uplink_config,
)
from tests.support.register import RunningRegister
from tests.support.stores import open_store

ESTABLISHED = "01"


def client_connections(port: int) -> set[int]:
    """Established TCP connections whose remote end is ``port`` on loopback, by their local (client) port: the
    clients' ends, not the register's."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == ESTABLISHED and int(remote.split(":")[1], 16) == port:
            ports.add(int(local.split(":")[1], 16))
    return ports


class Sampler:
    """The most connections seen at once, sampled every 2 ms in a thread while the uplink runs; which they were, and
    every connection seen, so that a failure tells extra connections held at once from connections replaced."""

    def __init__(self, port: int) -> None:
        self.port, self.most, self.samples = port, 0, 0
        self.at_most: set[int] = set()
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            now = client_connections(self.port)
            self.seen |= now
            if len(now) > self.most:
                self.most, self.at_most = len(now), now
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def test_a_busy_hub_holds_three_connections_and_its_alarm_does_not_queue(
    tmp_path: Path, register: RunningRegister
) -> None:
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 12_000, 0)
        for i in range(300):
            await store.add_event(Event(device_id="mqtt:door", kind=EventKind.CONTACT, state="open", ts=T0 + i))
            await store.add_item("diagnostics", T0 + i, {"cpu_temp": 50.0, "n": i})

        async def restrict(command: Any) -> dict[str, Any]:
            return {}

        uplink = Uplink(
            store,
            uplink_config(register.url, batch_items=1000),
            HubIdentity(hub.state_dir),
            command_handlers={"restrict": restrict},
        )
        with Sampler(register.port) as sampler:
            async with running(uplink):
                await until(lambda: uplink.status["readings"].sent > 0, what="the backlog to start draining")
                await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0))
                await until(lambda: len(register.items(hub.hub_id, "alarm")) == 1, what="the alarm")
                backlog_left = (await store.depth())["readings"]
                # A command's result takes its turn on the bulk connection: no fourth one.
                register.queue_command(hub.household_id, "restrict", {"category": "camera"})
                await until(
                    lambda: [c["status"] for c in register.reg.commands(hub.household_id)] == ["done"],
                    what="the command's result",
                )
                await until(lambda: uplink.status["readings"].cursor == 12_000, timeout=180, what="the readings")
                await until(lambda: uplink.status["diagnostics"].cursor == 300, what="the diagnostics")
                await until(lambda: uplink.status["events"].cursor == 300, what="the events")
    assert backlog_left > 0, "the alarm only arrived after the whole backlog"
    assert sampler.samples > 10
    # Readings, events and diagnostics all had work at once; the alarm lane and the command long-poll were open.
    assert 2 <= sampler.most <= 3, (
        f"the hub held {sampler.most} connections at once (client ports {sorted(sampler.at_most)}; {len(sampler.seen)}"
        f" seen in all); its alarm connection: {uplink.alarm.summary() if uplink.alarm else None}"
    )
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 12_001)))
    assert_exactly_once(register, hub.hub_id, "diagnostics", list(range(1, 301)))


class PortsSeen(RunningRegister):
    """A register that notes, per request path, the hub's source port: which of its connections carried it."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ports: dict[str, set[int]] = {}

    def wrap_app(self, app: Any) -> Any:
        async def noting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("client"):
                self.ports.setdefault(scope["path"], set()).add(scope["client"][1])
            await app(scope, receive, send)

        return noting


async def test_heartbeats_ride_the_bulk_connection(tmp_path: Path) -> None:
    """A heartbeat (every 300 s) on a connection of its own found it closed by the register each time and paid a TLS
    handshake; on the bulk lanes' connection, which readings keep open, it pays none."""
    (tmp_path / "register").mkdir()
    register = PortsSeen(tmp_path / "register")
    register.start()
    try:
        hub = register.enroll()
        async with open_store(hub.state_dir) as store:
            sent = 0

            async def health() -> p.Heartbeat:
                nonlocal sent
                sent += 1
                return p.Heartbeat(version="t", uptime_s=1, disk_free_bytes=1, disk_total_bytes=1, store_bytes=0)

            uplink = Uplink(store, uplink_config(register.url, heartbeat_interval=1.0), HubIdentity(hub.state_dir))
            uplink.health_source = health
            async with running(uplink):
                for i in range(40):
                    await store.add_readings(readings(5, 5 * i))
                    if sent >= 4:
                        break
                    acked = 5 * (i + 1)
                    await until(lambda: uplink.status["readings"].cursor >= acked, what="readings acked")  # noqa: B023
                await until(lambda: sent >= 4, what="four heartbeats")
        heartbeats, readings_ports = register.ports["/v1/heartbeat"], register.ports["/v1/ingest/readings"]
        assert heartbeats and heartbeats <= readings_ports, (heartbeats, readings_ports)
    finally:
        register.close()
