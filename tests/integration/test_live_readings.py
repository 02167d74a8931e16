"""Fresh readings while a member looks (cloud_sync/register/watching.py): a page of the household's app that shows
readings marks the household watched; its hubs hear it on the command long-poll, which answers at once, and send
readings within ``readings_live_linger_s`` instead of their long linger. The real register over TLS serves both the
app (a member's session) and the hubs (mTLS)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, event

from cloud_sync import protocol as p
from cloud_sync.register import db, watching
from cloud_sync.register.wakeups import Wakeups
from cloud_sync.register.watching import Watching
from cloud_sync.uplink import HubIdentity, Uplink
from gateway.model import Lane
from tests.integration.test_uplink import running, until, uplink_config
from tests.integration.test_uplink_linger import prime, reading
from tests.support.stores import open_store
from tests.support.webapp import WebAppServer


def _poll(hub: Any, url: str, wait: float, live: int | None) -> tuple[float, requests.Response]:
    params: dict[str, Any] = {"wait": wait}
    if live is not None:
        params["live"] = live
    started = time.monotonic()
    resp = hub.session().get(f"{url}/v1/commands", params=params, timeout=wait + 15)
    return time.monotonic() - started, resp


@contextlib.contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL the register runs on ``engine`` meanwhile (the server runs in this process, on the same engine)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_opening_the_app_answers_the_hubs_long_poll_at_once(webapp_server_any: WebAppServer) -> None:
    server = webapp_server_any
    household = server.household()
    member = server.member(household)
    hub = server.register.enroll(household)
    url = server.register.url
    engine = server.register.reg.engine
    with concurrent.futures.ThreadPoolExecutor(1) as pool, _statements(engine) as first:
        waiting = pool.submit(_poll, hub, url, 20.0, 0)
        assert server.signed_in(member).get("/app/home").status_code == 200
        took, resp = waiting.result(timeout=30)
    assert resp.status_code == 200 and resp.json() == []
    assert took < 10, f"the long-poll waited {took:.1f} s after the app opened"
    assert 290 <= int(resp.headers[p.LIVE_HEADER]) <= watching.WATCH_S
    # A hub that does not say what it heard (an older one) is never answered early, and may ignore the header.
    took, resp = _poll(hub, url, 1.0, None)
    assert took >= 0.9 and int(resp.headers[p.LIVE_HEADER]) > 0

    # A hub that heard it waits as ever, and hears the seconds left on each answer.
    took, resp = _poll(hub, url, 1.0, 1)
    assert took >= 0.9 and int(resp.headers[p.LIVE_HEADER]) > 0
    with _statements(engine) as second:
        assert server.signed_in(member).get("/app/home").status_code == 200
    # The mark is never written to the database: PostgreSQL carries it to the other processes by NOTIFY, once for
    # the first page and not again within the minute.
    notifies = [sql for sql in first + second if "pg_notify" in sql]
    assert len(notifies) == (1 if engine.dialect.name == "postgresql" else 0)
    assert not any("pg_notify" in sql for sql in second)
    writes = [sql for sql in first + second if sql.lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert not [sql for sql in writes if "households" in sql], writes


def test_a_live_hub_is_answered_when_the_window_ends(
    webapp_server: WebAppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watching, "WATCH_S", 2.0)
    server = webapp_server
    household = server.household()
    member = server.member(household)
    hub = server.register.enroll(household)
    assert server.signed_in(member).get("/app/home").status_code == 200
    took, resp = _poll(hub, server.register.url, 20.0, 1)
    assert resp.json() == [] and took < 10 and p.LIVE_HEADER not in resp.headers
    assert server.register.app.state.watching.seconds_left(household) == 0


async def test_another_register_process_hears_the_mark(postgres_url: str) -> None:
    """Two processes on one database (workers, or hosts): a mark made in one wakes the household's long-polls in
    the other and is answered there, and a malformed payload changes nothing."""
    engine = db.open_engine(postgres_url)
    here, there = Watching(engine), Watching(engine)
    listener = Wakeups(engine, retry_s=0.2, channels={watching.CHANNEL: there.heard})
    try:
        await listener.start()
        assert listener.listening.is_set()
        with listener.subscription("hub_1", watching.wake_key("hh_1")) as woken:
            marked = here.mark("hh_1")
            assert marked is not None and marked[1] == watching.wake_key("hh_1")
            await asyncio.to_thread(here.announce, "hh_1", marked[0])
            await asyncio.wait_for(woken.wait(), 5)
        assert 290 < there.seconds_left("hh_1") <= watching.WATCH_S
        assert there.seconds_left("hh_2") == 0
        assert here.mark("hh_1") is None  # within the minute: nothing to announce
        assert there.heard("hh_1 soon") is None and there.heard("1e300") is None
        assert there.heard(f"hh_2 {time.time() + 1e9}") == watching.wake_key("hh_2")
        assert there.seconds_left("hh_2") <= watching.WATCH_S  # a window never runs longer than one mark's
    finally:
        listener.close()
        engine.dispose()


def test_someone_on_another_household_does_not_make_this_one_live(webapp_server: WebAppServer) -> None:
    server = webapp_server
    mine, theirs = server.household("Meidän"), server.household("Naapuri")
    hub = server.register.enroll(mine)
    neighbour = server.member(theirs, "Naapuri")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_poll, hub, server.register.url, 2.0, 0)
        assert server.signed_in(neighbour).get("/app/home").status_code == 200
        took, resp = waiting.result(timeout=30)
    assert took >= 1.9 and p.LIVE_HEADER not in resp.headers


async def test_a_lingering_reading_goes_within_seconds_once_a_member_opens_the_app(
    webapp_server: WebAppServer,
) -> None:
    server = webapp_server
    household = server.household()
    member = server.member(household)
    enrolled = server.register.enroll(household)
    register = server.register
    config = uplink_config(register.url, readings_linger_s=60.0, readings_live_linger_s=0.2, command_poll_wait=25.0)
    async with open_store(enrolled.state_dir) as store:
        uplink = Uplink(store, config, HubIdentity(enrolled.state_dir))
        await prime(store)
        async with running(uplink):
            await until(lambda: uplink.status["readings"].cursor == 1, what="the first reading acknowledged")
            await store.add_readings([reading(1)])
            await store.flush()
            await until(lambda: uplink.status["readings"].lingering, what="the reading to linger")
            opened = time.monotonic()
            page = await asyncio.to_thread(server.signed_in(member).get, "/app/home")
            assert page.status_code == 200
            # Not the minute's linger: the long-poll answers, and the reading goes at once.
            await until(lambda: len(register.items(enrolled.hub_id, "readings")) == 2, timeout=10, what="the reading")
            assert time.monotonic() - opened < 10
            assert uplink.summary()["watched_s"] > 200
            # While watched, the next readings wait only the live linger.
            await store.add_readings([reading(2)])
            took = await until(lambda: len(register.items(enrolled.hub_id, "readings")) == 3, what="the next one")
            assert took < 5
    assert store.newest_seq(Lane.READINGS) == 3
