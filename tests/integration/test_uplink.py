"""The uplink against the real register over mTLS on loopback: exactly once, in order per lane, whatever happens."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import random
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyrage
import pytest
import sqlalchemy as sa

from cloud_sync import protocol as p
from cloud_sync.register import clips
from cloud_sync.register.server import ReadyServer, build_config
from cloud_sync.uplink import CommandHandler, HubIdentity, Uplink
from gateway import register_commands
from gateway.config import UplinkSection
from gateway.model import Event, EventKind, Lane, Quantity, Reading
from gateway.store import Store, schema
from tests.support.register import RunningRegister, start_register
from tests.support.stores import open_store
from tests.support.tcpproxy import fault_proxy

T0 = 1_790_000_000.0


class FaultInjector:
    """ASGI wrapper: answers the next ingest requests with the planned statuses instead of the register."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.plan: list[int] = []
        self.injected = 0
        self.paths: collections.Counter[str] = collections.Counter()
        self.ignore_held = False
        """Plays a register from before ``GET /v1/commands?held=``: the parameter is dropped."""
        self.older_wait = False
        """Plays a register from before :data:`~cloud_sync.protocol.WAIT_MAX_HEADER`: it says nothing of its longest
        long-poll, and refuses one over 30 s (422), as it did."""
        self.waits: list[float] = []
        """The ``wait`` of each command long-poll, in order."""
        self.older_columns = False
        """Plays a register from before :class:`~cloud_sync.protocol.ReadingColumns`: it says nothing of them on its
        acks, and refuses a batch sent as columns (415), as it did."""
        self.readings_sent_as: list[str] = []
        """The content type of each readings batch, in order."""
        self.readings_sizes: list[int] = []
        """How many readings each readings batch held, in order (counted while ``count_readings``)."""
        self.count_readings = False
        self.fail_readings: set[int] = set()
        """Readings batches (1: the first) answered 503 instead of the register."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
            if self.ignore_held:
                query = [part for part in scope["query_string"].split(b"&") if not part.startswith(b"held=")]
                scope = {**scope, "query_string": b"&".join(query)}
        if scope["type"] == "http" and scope["path"] == "/v1/commands":
            wait = float(urllib.parse.parse_qs(scope["query_string"].decode()).get("wait", ["0"])[0])
            self.waits.append(wait)
            if self.older_wait:
                if wait > p.LEGACY_COMMAND_WAIT_S:
                    await send({"type": "http.response.start", "status": 422, "headers": []})
                    await send({"type": "http.response.body", "body": b'{"error":"invalid","detail":"wait"}'})
                    return
                send = _without_header(send, p.WAIT_MAX_HEADER)
        if scope["type"] == "http" and scope["path"] == "/v1/ingest/readings":
            ctype = dict(scope["headers"]).get(b"content-type", b"").decode()
            self.readings_sent_as.append(ctype)
            if self.count_readings:
                receive = await self._counted(ctype, receive)
            if len(self.readings_sent_as) in self.fail_readings:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b'{"error":"injected","detail":"test fault"}'})
                return
            if self.older_columns:
                if ctype == p.READING_COLUMNS_CONTENT_TYPE:
                    headers = [(b"content-type", b"application/json")]
                    await send({"type": "http.response.start", "status": 415, "headers": headers})
                    await send({"type": "http.response.body", "body": b'{"error":"content_type","detail":"msgpack"}'})
                    return
                send = _without_header(send, p.READING_COLUMNS_HEADER)
        if scope["type"] == "http" and scope["path"].startswith("/v1/ingest") and self.plan:
            status = self.plan.pop(0)
            self.injected += 1
            headers = [(b"content-type", b"application/json")]
            if status == 429:
                headers.append((b"retry-after", b"0.2"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"error":"injected","detail":"test fault"}'})
            return
        await self.app(scope, receive, send)

    async def _counted(self, ctype: str, receive: Any) -> Any:
        """Reads the whole body to count its readings; returns a ``receive`` that gives the app the same body."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = p.decompress_bounded(body)
        if ctype == p.READING_COLUMNS_CONTENT_TYPE:
            self.readings_sizes.append(sum(len(s.seqs) for s in p.decode_columns("readings", payload).sensors))
        else:
            self.readings_sizes.append(len(p.decode_batch("readings", payload).items))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # the disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def _without_header(send: Any, name: str) -> Any:
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message["headers"] if k.decode().lower() != name.lower()]
            message = {**message, "headers": headers}
        await send(message)

    return sending


class FaultyRegister(RunningRegister):
    injector: FaultInjector

    def start(self) -> None:
        config = build_config(self.settings, port=self.port, registry=self.reg, graceful_s=1)
        self.injector = getattr(self, "injector", None) or FaultInjector(config.app)
        self.injector.app = config.app
        config.app = self.injector
        self._server = ReadyServer(config)
        self._thread = threading.Thread(target=self._server.run, name="register", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(30):
            raise RuntimeError("register did not start")


def _db_url(request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if request.param == "postgresql" else None


@pytest.fixture(params=["sqlite", "postgresql"])
def register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningRegister]:
    """The whole suite runs against the register on SQLite (the default) and on PostgreSQL (production)."""
    r = start_register(tmp_path / "register", _db_url(request))
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def faulty_register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultyRegister]:
    (tmp_path / "register").mkdir()
    r = FaultyRegister(tmp_path / "register", _db_url(request))
    r.start()
    try:
        yield r
    finally:
        r.close()


def uplink_config(url: str, **kw: Any) -> UplinkSection:
    base: dict[str, Any] = {
        "enabled": True,
        "register_url": url,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "read_timeout": 10.0,
        "command_poll_wait": 1.0,
        # Short: these tests are about delivery; the linger's own are in test_uplink_linger.py.
        "readings_linger_s": 0.2,
    }
    base.update(kw)
    return UplinkSection(**base)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(uplink.run(), name="uplink-under-test")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> float:
    """Polls ``predicate`` (in a thread) until it is true; returns how long that took."""
    start = time.monotonic()
    while not await asyncio.to_thread(predicate):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading("mqtt:0x1", Quantity.TEMPERATURE, float(v), T0 + v) for v in range(start, start + n)]


def assert_exactly_once(register: RunningRegister, hub_id: str, lane: str, expected: list[int]) -> None:
    got = [seq for seq, _ in register.items(hub_id, lane)]
    assert got == expected, f"{lane}: register holds {len(got)} items, expected {len(expected)} once each, in order"


async def produce(store: Store, n_readings: int, n_events: int) -> None:
    for i in range(0, n_readings, 500):
        await store.add_readings(readings(min(500, n_readings - i), i))
    for i in range(n_events):
        await store.add_event(
            Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke" if i % 2 else "clear", ts=T0 + i)
        )


async def test_everything_arrives_exactly_once_and_the_cursor_follows(
    tmp_path: Path, register: RunningRegister
) -> None:
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 3000, 5)
        uplink = Uplink(store, uplink_config(register.url, batch_items=700), HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 3000, what="readings")
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 5, what="alarms")
            await store.flush()
            await until(lambda: store.synced_seq(Lane.READINGS) == 3000, what="cursor")
        assert (await store.depth())["readings"] == 0
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 3001)))
    assert_exactly_once(register, hub.hub_id, "alarm", list(range(1, 6)))
    bodies = [b for _, b in register.items(hub.hub_id, "readings")]
    assert bodies[41]["value"] == 41.0


async def test_readings_go_as_columns_once_the_register_says_it_takes_them(
    tmp_path: Path, faulty_register: FaultyRegister
) -> None:
    """The first readings batch goes as items; the register's ack says it takes columns, and the rest go so. A
    register rolled back to a release before columns refuses them (415) and says nothing of them: the hub sends
    the same batch again as items at once, and items from then on. Every reading arrives once either way."""
    register, injector = faulty_register, faulty_register.injector
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 3000, 0)
        config = uplink_config(register.url, batch_items=700, batch_items_max=700)  # batches that never grow
        uplink = Uplink(store, config, HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 3000, what="readings")
            columns, items = p.READING_COLUMNS_CONTENT_TYPE, p.MSGPACK_CONTENT_TYPE
            assert injector.readings_sent_as == [items] + [columns] * 4  # 700 + 4 x 700 (the last 200)
            injector.older_columns = True
            await store.add_readings(readings(1000, 3000))
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 4000, what="readings after rollback")
            assert injector.readings_sent_as[5:] == [columns, items, items]  # refused, sent again, and the rest
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 4001)))
    bodies = {seq: b for seq, b in register.items(hub.hub_id, "readings")}
    assert bodies[1]["value"] == 0.0 and bodies[2000]["value"] == 1999.0 and bodies[4000]["value"] == 3999.0
    assert bodies[2000]["ts"] == T0 + 1999


async def test_catch_up_batches_grow_while_acks_are_quick_and_fall_back_at_a_failure(
    tmp_path: Path, faulty_register: FaultyRegister
) -> None:
    """A backlog goes in batches that double from ``batch_items`` to ``batch_items_max`` while the register
    acknowledges full ones in time; a failed attempt (503 on the fifth batch) brings them back to ``batch_items``,
    including the page read while it was on the wire. Every reading arrives once."""
    register, injector = faulty_register, faulty_register.injector
    injector.count_readings = True
    injector.fail_readings = {5}
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 22_000, 0)
        # A long read timeout: every ack comes in time to grow the next batch, whatever this machine's load.
        config = uplink_config(register.url, batch_items=1000, batch_items_max=4000, read_timeout=240.0)
        uplink = Uplink(store, config, HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 22_000, what="readings")
            # Each page is read while the one before is on the wire, so it has the size from before that one's ack.
            assert injector.readings_sizes == [1000, 1000, 2000, 4000, 4000, 4000] + [1000] * 5 + [2000, 3000]
            assert uplink.summary()["lanes"]["readings"]["batch_items"] == 4000
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 22_001)))


async def test_register_down_then_back(tmp_path: Path, register: RunningRegister) -> None:
    hub = register.enroll()
    register.stop()
    async with open_store(hub.state_dir) as store:
        uplink = Uplink(store, uplink_config(register.url), HubIdentity(hub.state_dir))
        async with running(uplink):
            await produce(store, 1000, 3)
            await until(lambda: uplink.status["readings"].last_error is not None, what="a connection error")
            assert uplink.status["readings"].next_retry is not None
            register.start()
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 1000, what="readings after outage")
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 3, what="alarms after outage")
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 1001)))


async def test_500_and_429_with_retry_after_are_retried(tmp_path: Path, faulty_register: FaultyRegister) -> None:
    register = faulty_register
    hub = register.enroll()
    register.injector.plan = [500, 503, 429, 500, 429]
    async with open_store(hub.state_dir) as store:
        await produce(store, 2000, 4)
        uplink = Uplink(store, uplink_config(register.url, batch_items=400), HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: len(register.items(hub.hub_id, "readings")) == 2000, what="readings")
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 4, what="alarms")
    assert register.injector.injected == 5
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 2001)))
    assert_exactly_once(register, hub.hub_id, "alarm", list(range(1, 5)))


async def test_a_permanent_rejection_is_isolated_and_dead_lettered(
    tmp_path: Path, faulty_register: FaultyRegister
) -> None:
    register = faulty_register
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 0, 4)
        # An event the register must refuse (state longer than the protocol allows), between good ones.
        await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="x" * 100, ts=T0))
        await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="clear", ts=T0))
        uplink = Uplink(store, uplink_config(register.url), HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 5, what="the good alarms")
            await until(lambda: uplink.status["alarm"].dead_lettered == 1, what="the dead letter")
        dead = await store.dead_letters()
    assert [(d["lane"], d["seq"]) for d in dead] == [("alarm", 5)]
    assert "422" in dead[0]["reason"]
    assert_exactly_once(register, hub.hub_id, "alarm", [1, 2, 3, 4, 6])


async def test_connections_cut_after_commit_and_delayed_never_duplicate(
    tmp_path: Path, register: RunningRegister
) -> None:
    hub = register.enroll()
    with fault_proxy(register.port) as proxy:
        proxy.cut_replies = 4
        proxy.delay = 0.002
        async with open_store(hub.state_dir) as store:
            await produce(store, 4000, 0)
            uplink = Uplink(store, uplink_config(proxy.url, batch_items=500), HubIdentity(hub.state_dir))
            async with running(uplink):
                await until(lambda: len(register.items(hub.hub_id, "readings")) == 4000, what="readings")
                await until(lambda: uplink.status["readings"].cursor == 4000, what="the acknowledgement")
        assert proxy.cut_count == 4
    assert_exactly_once(register, hub.hub_id, "readings", list(range(1, 4001)))


async def test_alarm_is_not_queued_behind_a_backlog(tmp_path: Path, register: RunningRegister) -> None:
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        await produce(store, 60_000, 0)
        uplink = Uplink(store, uplink_config(register.url, batch_items=5000), HubIdentity(hub.state_dir))
        async with running(uplink):
            await until(lambda: uplink.status["readings"].sent > 0, what="the backlog to start draining")
            await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0))
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 1, what="the alarm")
            backlog_left = (await store.depth())["readings"]
    assert backlog_left > 0, "the alarm only arrived after the whole backlog"


async def test_commands_are_fetched_run_and_reported(tmp_path: Path, register: RunningRegister) -> None:
    hub = register.enroll()
    ran: list[dict[str, Any]] = []

    async def restrict(command: Any) -> dict[str, Any]:
        ran.append(command.args)
        return {"restricted": [command.args["category"]]}

    async with open_store(hub.state_dir) as store:
        uplink = Uplink(
            store, uplink_config(register.url), HubIdentity(hub.state_dir), command_handlers={"restrict": restrict}
        )
        async with running(uplink):
            register.queue_command(hub.household_id, "restrict", {"category": "camera", "on": True})
            register.queue_command(hub.household_id, "export", {})
            await until(lambda: len(ran) == 1, what="the command to run")
            await until(
                lambda: all(c["status"] != "pending" for c in register.reg.commands(hub.household_id)),
                what="both results reported",
            )
        results = {c["kind"]: c["status"] for c in register.reg.commands(hub.household_id)}
    assert ran == [{"category": "camera", "on": True}]
    assert results == {"restrict": "done", "export": "failed"}


@pytest.mark.parametrize("older", [False, True], ids=["says-55", "older-register"])
async def test_the_long_poll_waits_as_long_as_the_register_says(
    tmp_path: Path, faulty_register: FaultyRegister, older: bool
) -> None:
    """A hub asks for 30 s until the register says how long it takes (55 s), then for that; a register from before
    the header never gets more than 30 s, so a hub configured longer is not refused by it (422)."""
    register = faulty_register
    register.injector.older_wait = older
    hub = register.enroll()
    ran: list[str] = []

    async def restrict(command: Any) -> dict[str, Any]:
        ran.append(command.id)
        return {}

    config = uplink_config(register.url, command_poll_wait=55.0)
    async with open_store(hub.state_dir) as store:
        uplink = Uplink(store, config, HubIdentity(hub.state_dir), command_handlers={"restrict": restrict})
        async with running(uplink):
            for n in (1, 2):
                await until(lambda n=n: len(register.injector.waits) == n, what=f"long-poll {n}")
                # A command answers the waiting long-poll at once, and the hub polls again.
                register.queue_command(hub.household_id, "restrict", {"category": "camera", "on": n == 1})
                await until(lambda n=n: len(ran) == n, what=f"command {n} to run")
            await until(lambda: len(register.injector.waits) >= 3, what="the third long-poll")
            assert register.injector.waits[:3] == ([30.0, 30.0, 30.0] if older else [30.0, 55.0, 55.0])
            if not older:
                # The register is rolled back to the release before while the hub waits 55 s: refused once (422),
                # the hub asks for 30 s again, and commands flow.
                register.injector.older_wait = True
                register.queue_command(hub.household_id, "restrict", {"category": "camera", "on": True})
                await until(lambda: len(register.injector.waits) >= 5, what="the long-polls after the rollback")
                waits = register.injector.waits
                assert waits[3:5] == [55.0, 30.0], waits  # the first refused, the next taken
                register.queue_command(hub.household_id, "restrict", {"category": "camera", "on": False})
                await until(lambda: len(ran) == 4, what="a command from the rolled-back register")
                assert set(register.injector.waits[4:]) == {30.0}


AFTER_THE_EXPORT: list[tuple[str, dict[str, Any]]] = [
    ("rename", {"device_id": "mqtt:0x1"}),  # before the erase, which it would otherwise wait for (both touch devices)
    ("erase", {}),
    ("restrict", {"category": "camera", "on": True}),
    ("alarm_ack", {}),
    ("restrict", {"category": "camera", "on": False}),
]


@pytest.mark.parametrize("old_register", [False, True], ids=["held", "register-ignores-held"])
async def test_a_long_command_holds_up_only_the_commands_that_touch_what_it_touches(
    tmp_path: Path, faulty_register: FaultyRegister, old_register: bool
) -> None:
    """An export that takes long (it waits for the test) is not resent, and holds up neither an ``alarm_ack`` nor a
    ``rename`` issued after it; an ``erase`` and two ``restrict`` after it still run after it, in issue order. Also
    against a register that resends what the hub holds (one from before ``held``): the hub runs nothing twice."""
    register = faulty_register
    register.injector.ignore_held = old_register
    hub = register.enroll()
    release = asyncio.Event()
    ran: list[str] = []

    def handler(name: str, gate: asyncio.Event | None = None) -> CommandHandler:
        async def run(command: Any) -> dict[str, Any]:
            ran.append(name if name != "restrict" else f"restrict {command.args['on']}")
            if gate is not None:
                await gate.wait()
                ran.append(f"{name} done")
            return {}

        return run

    handlers = {k: handler(k) for k in ("alarm_ack", "erase", "restrict", "rename")}
    handlers["export"] = handler("export", release)

    def status() -> dict[str, str]:
        return {c["kind"] + str(c["args"].get("on", "")): c["status"] for c in register.reg.commands(hub.household_id)}

    async with open_store(hub.state_dir) as store:
        uplink = Uplink(
            store,
            uplink_config(register.url),
            HubIdentity(hub.state_dir),
            command_handlers=handlers,
            command_touches=register_commands.TOUCHES,
        )
        async with running(uplink):
            register.queue_command(hub.household_id, "export")
            await until(lambda: ran == ["export"], what="the export to start")
            for kind, args in AFTER_THE_EXPORT:
                register.queue_command(hub.household_id, kind, args)
            await until(lambda: status()["alarm_ack"] == status()["rename"] == "done", what="ack and rename")
            # Two more polls while the export runs: it is not run again (nor even resent, by a register that knows
            # ``held``).
            polls = register.injector.paths["/v1/commands"]
            await until(lambda: register.injector.paths["/v1/commands"] >= polls + 2, what="two more polls")
            assert sorted(ran) == ["alarm_ack", "export", "rename"]
            assert status()["export"] == status()["erase"] == status()["restrictTrue"] == "pending"
            release.set()
            await until(lambda: set(status().values()) == {"done"}, what="every result")
    assert ran[ran.index("export done") :] == ["export done", "erase", "restrict True", "restrict False"]
    assert ran.count("export") == 1


async def test_sync_now_cuts_a_long_backoff_short(tmp_path: Path, register: RunningRegister) -> None:
    hub = register.enroll()
    register.stop()
    async with open_store(hub.state_dir) as store:
        config = uplink_config(register.url, backoff_initial=120.0, backoff_max=300.0)
        # Seeded, and equal jitter: the first pause is 60-120 s, never the short one that made this test flaky.
        uplink = Uplink(store, config, HubIdentity(hub.state_dir), rng=random.Random(12))
        async with running(uplink):
            await produce(store, 100, 1)
            # Wait for a pause with more than 30 s left: without the kick the alarm could not arrive within 20 s.
            await until(
                lambda: (uplink.status["alarm"].next_retry or 0) > time.time() + 30, what="a long backoff pause"
            )
            register.start()
            started = time.monotonic()
            uplink.kick()
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 1, timeout=20, what="the alarm")
            assert time.monotonic() - started < 20


async def _index_clip(store: Store, spool: Path, clip_id: str, size: int, member: Any) -> dict[str, Any]:
    """Seals ``size`` random bytes to ``member`` and indexes the clip, as the camera pipeline does."""
    from gateway.store.clips import encrypt_clip
    from gateway.store.clipspool import publish

    clip, sealed = await asyncio.to_thread(
        encrypt_clip,
        io.BytesIO(random.Random(clip_id).randbytes(size)),
        spool=spool,
        clip_id=clip_id,
        recipients=[member],
        device_id="camera:1",
        started=T0,
        duration_s=4.0,
        reason="motion",
        publish=False,
    )
    record = msgspec.to_builtins(clip)
    await store.add_item(Lane.CLIPS, clip.started, record, ref=clip.clip_id)
    await asyncio.to_thread(publish, sealed)
    return record


async def test_a_clip_erased_while_it_uploads_is_dropped_and_the_register_told(
    tmp_path: Path, register: RunningRegister
) -> None:
    hub = register.enroll()
    member = str(pyrage.x25519.Identity.generate().to_public())
    spool = hub.state_dir / "spool"
    spool.mkdir()
    async with open_store(hub.state_dir) as store:
        # Capped at 1 MiB/s with 1 MiB chunks: the upload of a 3 MiB clip is still running after its first chunk.
        config = uplink_config(register.url, clip_bandwidth_bytes_per_s=1024 * 1024)
        uplink = Uplink(store, config, HubIdentity(hub.state_dir), spool_dir=spool, rng=random.Random(3))
        doomed = await _index_clip(store, spool, "doomed", 3 * 1024 * 1024, member)
        async with running(uplink):
            await until(lambda: register.reg.blobs.size(hub.household_id, "doomed") > 0, what="the first chunk")
            # Erasure: the index rows go first, then the file (gateway.privacy does it in this order).
            await store.run_write(
                lambda conn: conn.execute(sa.delete(schema.items).where(schema.items.c.ref == "doomed"))
            )
            (spool / "doomed.age").unlink()
            kept = await _index_clip(store, spool, "kept", 1000, member)
            await until(lambda: register.items(hub.hub_id, "clips"), what="the next clip's record")
        held = {c["clip_id"]: c for c in clips.list_clips(register.reg, hub.household_id)}
        assert set(held) == {"kept"} and held["kept"]["complete"]
        assert held["kept"]["sha256"] == kept["sha256"]
        assert register.reg.blobs.size(hub.household_id, "doomed") == 0  # the partial upload was dropped
        assert [b["clip_id"] for _, b in register.items(hub.hub_id, "clips")] == ["kept"]
        assert uplink.status["clips"].dead_lettered == 0
        assert uplink.supervisor is not None
        assert all(h.restarts == 0 for h in uplink.supervisor.health.values())  # handled, not crashed
        assert doomed["clip_id"] not in held
