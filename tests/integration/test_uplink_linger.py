"""The readings linger (``uplink.readings_linger_s``, cloud_sync/uplink/lanes.py) against the real register over
mTLS: readings committed while the uplink runs wait for company, up to the linger or until a batch is full; alarms
and events never wait; ``sync --now`` and a stop send what waits; a SIGKILL loses nothing of it."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.uplink import HubIdentity, Uplink
from gateway.model import Event, EventKind, Lane, Quantity, Reading
from gateway.store import Store
from tests.integration.test_uplink import running, until, uplink_config
from tests.support.register import RunningRegister
from tests.support.stores import open_store

T0 = 1_790_000_000.0
READINGS = "/v1/ingest/readings"


class CountingRegister(RunningRegister):
    """The register, with the requests it was sent counted by path."""

    paths: collections.Counter[str]

    def wrap_app(self, app: Any) -> Any:
        self.paths = getattr(self, "paths", collections.Counter())

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.paths[scope["path"]] += 1
            await app(scope, receive, send)

        return counted


@pytest.fixture
def register(tmp_path: Path) -> Iterator[CountingRegister]:
    (tmp_path / "register").mkdir()
    r = CountingRegister(tmp_path / "register")
    r.start()
    try:
        yield r
    finally:
        r.close()


def lingering(register: RunningRegister, store: Store, state_dir: Path, linger: float = 60.0, **kw: Any) -> Uplink:
    """An uplink to ``register`` of the hub enrolled in ``state_dir``, whose readings linger ``linger`` seconds."""
    return Uplink(store, uplink_config(register.url, readings_linger_s=linger, **kw), HubIdentity(state_dir))


def reading(i: int) -> Reading:
    return Reading(f"mqtt:sensor{i % 60}", Quantity.TEMPERATURE, 20.0 + (i % 7) / 10, T0 + i)


async def prime(store: Store) -> None:
    """A first reading (seq 1) in the store before the uplink starts: its first drain sends it without a linger."""
    await store.add_readings([Reading("mqtt:primer", Quantity.TEMPERATURE, 0.0, T0)])
    await store.flush()


async def connected(uplink: Uplink, store: Store) -> None:
    """The first reading acknowledged: the readings lane is idle, waiting for the next commit."""
    await until(lambda: uplink.status["readings"].cursor == store.newest_seq(Lane.READINGS) == 1, what="a first ack")


async def trickle(store: Store, seconds: float, every: float) -> int:
    """A reading committed every ``every`` seconds for ``seconds``: a home's sensors, faster."""
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await store.add_readings([reading(n)])
        await store.flush()
        n += 1
        await asyncio.sleep(every)  # the pace of the producer, not a synchronisation
    return n


async def requests_for_a_trickle(register: CountingRegister, linger: float) -> int:
    """Readings requests for 4.5 s of readings committed one by one, every 0.15 s, with this linger."""
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        uplink = lingering(register, store, hub.state_dir, linger)
        await prime(store)
        async with running(uplink):
            await connected(uplink, store)
            before = register.paths[READINGS]
            n = await trickle(store, seconds=4.5, every=0.15)
            await until(lambda: len(register.items(hub.hub_id, "readings")) == n + 1, what="every reading")
            sent = register.paths[READINGS] - before
    assert [seq for seq, _ in register.items(hub.hub_id, "readings")] == list(range(1, n + 2))
    return sent


async def test_readings_committed_one_by_one_go_in_a_few_requests_with_a_linger_and_one_each_without(
    register: CountingRegister,
) -> None:
    without, with_linger = await requests_for_a_trickle(register, 0.0), await requests_for_a_trickle(register, 1.5)
    # Without a linger every commit is a request (about 30 here); with 1.5 s, one per 1.5 s at most, plus the last.
    assert without >= 10, (without, with_linger)
    assert with_linger <= 4.5 / 1.5 + 2, (without, with_linger)


async def test_a_full_batch_goes_at_once_and_sync_now_sends_what_waits(register: CountingRegister) -> None:
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        uplink = lingering(register, store, hub.state_dir, batch_items=100)
        await prime(store)
        async with running(uplink):
            await connected(uplink, store)
            await store.add_readings([reading(i) for i in range(10)])
            await store.flush()
            # Ten readings wait for company (a minute's linger): nothing is sent for a good while.
            with pytest.raises(AssertionError, match="timed out"):
                await until(lambda: len(register.items(hub.hub_id, "readings")) > 1, timeout=1.5, what="lingering")
            # A full batch does not wait: 90 more make 100.
            await store.add_readings([reading(i) for i in range(10, 100)])
            took = await until(lambda: len(register.items(hub.hub_id, "readings")) == 101, what="the full batch")
            assert took < 30
            # Ten more wait again, until `kotihub sync --now`.
            await store.add_readings([reading(i) for i in range(100, 110)])
            await store.flush()
            with pytest.raises(AssertionError, match="timed out"):
                await until(lambda: len(register.items(hub.hub_id, "readings")) > 101, timeout=1.0, what="lingering")
            uplink.kick()
            assert await until(lambda: len(register.items(hub.hub_id, "readings")) == 111, what="kicked") < 30


async def test_alarms_and_events_never_wait_and_a_stop_sends_what_waits(register: CountingRegister) -> None:
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        uplink = lingering(register, store, hub.state_dir)
        await prime(store)
        async with running(uplink):
            await connected(uplink, store)
            await store.add_readings([reading(i) for i in range(5)])
            await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0))
            await store.add_event(Event(device_id="mqtt:d", kind=EventKind.CONTACT, state="open", ts=T0))
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 1, timeout=30, what="the alarm")
            await until(lambda: len(register.items(hub.hub_id, "events")) == 1, timeout=30, what="the event")
            assert len(register.items(hub.hub_id, "readings")) == 1  # the five are still lingering
            # The daemon's stop: what lingers goes before the loops end.
            await uplink.flush(timeout=20)
            assert len(register.items(hub.hub_id, "readings")) == 6
            assert uplink.status["readings"].cursor == 6


def test_what_lingers_when_the_hub_is_killed_is_sent_by_the_next_start(
    tmp_path: Path, register: CountingRegister
) -> None:
    hub = register.enroll()
    key = os.urandom(32)
    (tmp_path / "key").write_bytes(key)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.linger_child", str(hub.state_dir), str(tmp_path / "key"), register.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "COMMITTED 50", "the child did not commit its readings"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    assert len(register.items(hub.hub_id, "readings")) == 1  # only its first: the 50 were lingering when it died

    async def restart() -> None:
        async with open_store(hub.state_dir, key) as store:
            uplink = lingering(register, store, hub.state_dir)
            async with running(uplink):
                # At its start a lane sends what it holds at once: no linger for a backlog.
                took = await until(lambda: len(register.items(hub.hub_id, "readings")) == 51, what="the backlog")
                assert took < 30

    asyncio.run(restart())
    assert [seq for seq, _ in register.items(hub.hub_id, "readings")] == list(range(1, 52))


async def test_a_stop_does_not_wait_for_a_register_that_is_gone(register: CountingRegister) -> None:
    """The stop's flush sends what lingers if it can; with the register down it returns at the first failure (well
    inside its bound), and the readings stay in the store for the next start."""
    hub = register.enroll()
    async with open_store(hub.state_dir) as store:
        uplink = lingering(register, store, hub.state_dir)
        await prime(store)
        async with running(uplink):
            await connected(uplink, store)
            await store.add_readings([reading(i) for i in range(5)])
            await store.flush()
            await until(lambda: uplink.status["readings"].lingering, what="the readings lingering")
            register.stop()
            started = time.monotonic()
            await uplink.flush(timeout=60)
            assert time.monotonic() - started < 30, "the flush waited for a register that refuses connections"
            assert uplink.status["readings"].last_error is not None
            assert uplink.status["readings"].cursor == 1
        assert (await store.depth())["readings"] == 5
