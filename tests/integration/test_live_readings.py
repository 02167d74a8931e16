"""Fresh readings while a member looks (cloud_sync/register/watching.py): a page of the household's app that shows
readings marks the household watched; its hubs hear it on the command long-poll, which answers at once, and send
readings within ``readings_live_linger_s`` instead of their long linger. The real register over TLS serves both the
app (a member's session) and the hubs (mTLS)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import requests
from sqlalchemy import select, update

from cloud_sync import protocol as p
from cloud_sync.register import db, retention, watching
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


def _watched_until(server: WebAppServer, household: str) -> float | None:
    with server.register.reg.engine.connect() as conn:
        return conn.execute(select(db.households.c.watched_until).where(db.households.c.id == household)).scalar_one()


def test_opening_the_app_answers_the_hubs_long_poll_at_once(webapp_server_any: WebAppServer) -> None:
    server = webapp_server_any
    household = server.household()
    member = server.member(household)
    hub = server.register.enroll(household)
    url = server.register.url
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
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
    # Another page within the minute writes nothing.
    first = _watched_until(server, household)
    assert server.signed_in(member).get("/app/home").status_code == 200
    assert _watched_until(server, household) == first

    # The window ends: a hub still live is answered when it does, without the header.
    with server.register.reg.engine.begin() as conn:
        conn.execute(
            update(db.households).where(db.households.c.id == household).values(watched_until=time.time() + 0.5)
        )
    took, resp = _poll(hub, url, 20.0, 1)
    assert took < 10 and p.LIVE_HEADER not in resp.headers
    # A household that erases its data is no longer watched.
    watching.watch(server.register.reg, household)
    retention.erase_household(server.register.reg, household, actor="test:erase")
    assert _watched_until(server, household) is None


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
