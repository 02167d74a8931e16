"""The app's security promises over plain HTTPS (httpx): household scoping, CSRF, sessions that expire and end,
one-time links that work once and not after their expiry, sign-in endpoints only for the app's own pages, and the
rate limit on failed sign-ins. The passkey ceremonies and session fixation are tested in the browser
(tests/browser/test_app_e2e.py)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.webapp import schema, session
from tests.support.notify import household, post_state
from tests.support.register import ACTOR
from tests.support.webapp import WebAppServer


def _alarm_of(app: WebAppServer, household_id: str) -> dict[str, object]:
    a = notify_schema.alarms.c
    with app.register.reg.engine.connect() as conn:
        return dict(conn.execute(select(notify_schema.alarms).where(a.household_id == household_id)).mappings().one())


@pytest.fixture
def two_homes(webapp_server: WebAppServer) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two households, each with a hub, a smoke detector named after the household, and an open smoke alarm:
    ``((household, first member), (household, first member))``."""
    out = []
    for name, seq in (("Virtanen", 1), ("Korhonen", 1)):
        hub, members = household(webapp_server.register)
        s = hub.session()
        r = s.post(
            f"{webapp_server.register.url}/v1/devices",
            json=[{"device_id": "mqtt:0x00158d0001a2b3c4", "kind": "smoke_detector", "name": f"Varoitin {name}"}],
            timeout=10,
        )
        assert r.status_code == 200, r.text
        post_state(webapp_server.register.url, hub, seq, "smoke")
        out.append((hub.household_id, members[0]))
    return out[0], out[1]


def test_a_member_sees_and_acknowledges_only_their_own_household(
    webapp_server: WebAppServer, two_homes: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    (home_a, aino), (home_b, _) = two_homes
    alarm_b = _alarm_of(webapp_server, home_b)
    with webapp_server.signed_in(aino) as c:
        page = c.get("/app/home")
        assert page.status_code == 200
        assert "Varoitin Virtanen" in page.text
        assert "Varoitin Korhonen" not in page.text and str(alarm_b["id"]) not in page.text
        assert str(alarm_b["id"]) not in c.get("/app/alarms").text
        # Another household's alarm, by its id: no such alarm here, and it stays open.
        r = c.post(f"/app/alarms/{alarm_b['id']}/ack", data={"csrf": c.csrf})
        assert r.status_code == 404
        assert _alarm_of(webapp_server, home_b)["acked_at"] is None
        # Their own: acknowledged as the member, through the app.
        alarm_a = _alarm_of(webapp_server, home_a)
        r = c.post(f"/app/alarms/{alarm_a['id']}/ack", data={"csrf": c.csrf})
        assert r.status_code == 303 and r.headers["location"] == "/app/home"
        acked = _alarm_of(webapp_server, home_a)
        assert acked["acked_by"] == f"member:{aino}" and acked["ack_channel"] == "app"
    audit = webapp_server.register.reg.audit_entries(home_a)
    assert any(e["action"] == "alarm.ack" and e["actor"] == f"member:{aino}" for e in audit)
    assert not any(e["actor"] == f"member:{aino}" for e in webapp_server.register.reg.audit_entries(home_b))


def test_state_changes_without_or_with_a_wrong_csrf_token_are_refused(
    webapp_server: WebAppServer, two_homes: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    (home_a, aino), _ = two_homes
    alarm = _alarm_of(webapp_server, home_a)
    with webapp_server.signed_in(aino) as c, webapp_server.signed_in(aino) as other:
        assert other.csrf != c.csrf
        for data, headers in (
            ({}, {}),
            ({"csrf": "x" * 43}, {}),
            ({"csrf": other.csrf}, {}),  # another session's token
            ({}, {"X-CSRF-Token": "nope"}),
        ):
            r = c.post(f"/app/alarms/{alarm['id']}/ack", data=data, headers=headers)
            assert r.status_code == 403, (data, headers)
        assert _alarm_of(webapp_server, home_a)["acked_at"] is None
        assert c.post("/app/signout", data={}).status_code == 403
        assert c.get("/app/home").status_code == 200  # still signed in
        # The header works as well as the form field.
        r = c.post(f"/app/alarms/{alarm['id']}/ack", headers={"X-CSRF-Token": c.csrf})
        assert r.status_code == 303
        assert _alarm_of(webapp_server, home_a)["acked_at"] is not None


def test_no_session_redirects_pages_and_refuses_actions(webapp_server: WebAppServer) -> None:
    with webapp_server.client() as c:
        r = c.get("/app/home")
        assert r.status_code == 303 and r.headers["location"] == "/app/signin"
        c.cookies.set(session.COOKIE, "made-up-session-id")
        assert c.get("/app/alarms").status_code == 303
        assert c.post("/app/alarms/x/ack", data={"csrf": "x"}).status_code == 401


def test_sessions_expire_when_idle_and_when_old_and_end_at_sign_out(webapp_server_any: WebAppServer) -> None:
    webapp_server = webapp_server_any
    h = webapp_server.household()
    m = webapp_server.member(h)
    s = schema.sessions.c
    engine = webapp_server.register.reg.engine
    for column, age in (("last_seen", session.IDLE_S + 5), ("created_at", session.ABSOLUTE_S + 5)):
        with webapp_server.signed_in(m) as c:
            assert c.get("/app/home").status_code == 200
            with engine.begin() as conn:
                conn.execute(update(schema.sessions).where(s.member_id == m).values({column: time.time() - age}))
            assert c.get("/app/home").status_code == 303, column
    with webapp_server.signed_in(m) as c:
        token = c.cookies[session.COOKIE]
        r = c.post("/app/signout", data={"csrf": c.csrf})
        assert r.status_code == 303
        assert 'kh_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
        c.cookies.set(session.COOKIE, token)
        assert c.get("/app/home").status_code == 303  # the old id is dead on the server, not only in the browser
    # A removed member's sessions die with them.
    with webapp_server.signed_in(m) as c:
        webapp_server.register.reg.remove_member(h, m, actor=ACTOR)
        assert c.get("/app/home").status_code == 303


def test_an_expired_used_or_unknown_link_is_refused(webapp_server_any: WebAppServer) -> None:
    webapp_server = webapp_server_any
    h = webapp_server.household()
    m = webapp_server.member(h)
    expired = webapp_server.signin_link(m, ttl_s=1)
    with webapp_server.register.reg.engine.begin() as conn:
        conn.execute(update(schema.signin_links).values(expires_at=time.time() - 1))
    live = webapp_server.signin_link(m)
    with webapp_server.client() as c:
        path = live.removeprefix(webapp_server.url)
        assert c.get(path).status_code == 200
        assert c.get(path).status_code == 200  # looking at the page does not use the link up
        for link in (expired, webapp_server.url + "/app/enrol/" + "A" * 43):
            p = link.removeprefix(webapp_server.url)
            page = c.get(p)
            assert page.status_code == 410 and "Pyydä uusi linkki" in page.text
            r = c.post(p + "/options", json={})
            assert r.status_code == 401 and r.json()["error"] == "link_invalid"
        # Use the live one up as a passkey registration would, then it is refused too.
        with webapp_server.register.reg.engine.begin() as conn:
            from cloud_sync.register.webapp import links

            assert links.consume(conn, path.rsplit("/", 1)[1], now=time.time()) == m
        assert c.get(path).status_code == 410
        assert c.post(path + "/options", json={}).status_code == 401
    stored = {r.token_hash for r in webapp_server.register.reg.engine.connect().execute(select(schema.signin_links))}
    assert all(len(x) == 64 for x in stored) and path.rsplit("/", 1)[1] not in stored  # hashes only


def test_sign_in_endpoints_take_json_from_the_apps_own_origin_only(webapp_server_any: WebAppServer) -> None:
    with webapp_server_any.client() as c:
        ok = c.post("/app/signin/options", json={})
        assert ok.status_code == 200 and ok.json()["options"]["rpId"] == "localhost"
        # A challenge is good for one answer: a made-up answer uses it up.
        r = c.post("/app/signin/verify", json={"ceremony": ok.json()["ceremony"], "credential": {"id": "x"}})
        assert r.status_code == 401 and r.json()["error"] == "passkey_unknown"
        r = c.post("/app/signin/verify", json={"ceremony": ok.json()["ceremony"], "credential": {"id": "x"}})
        assert r.status_code == 401 and r.json()["error"] == "ceremony_expired"
        r = c.post("/app/signin/options", json={}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"] == "bad_origin"
        r = c.post("/app/signin/options", data={"a": "b"})
        assert r.status_code == 422
        r = c.post("/app/signin/verify", json={"ceremony": "nope", "credential": {"id": "x"}})
        assert r.status_code == 401 and r.json()["error"] == "ceremony_expired"


def test_failed_sign_ins_are_rate_limited_per_address(webapp_server: WebAppServer) -> None:
    burst = webapp_server.register.settings.auth_failure_burst
    with webapp_server.client() as c:
        codes = [
            c.post("/app/signin/verify", json={"ceremony": "x", "credential": {}}).status_code for _ in range(burst + 1)
        ]
        assert codes[:burst] == [422] * burst or codes[:burst] == [401] * burst
        assert codes[burst] == 429
        assert c.post("/app/signin/options", json={}).status_code == 429
