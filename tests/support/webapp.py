"""The household's app for tests: the real register over TLS on loopback serving ``/app``, reached as
``https://localhost:<port>`` (the WebAuthn origin; its relying party id is ``localhost``).

Fixture ``webapp_server`` (:class:`WebAppServer`; ``webapp_server_any`` also on PostgreSQL)::

    def test_x(webapp_server):
        h = webapp_server.household()
        m = webapp_server.member(h, "Aino")
        link = webapp_server.signin_link(m)      # https://localhost:<port>/app/enrol/<token>
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.responses import Response

from cloud_sync.register import db
from cloud_sync.register.webapp import links, session
from cloud_sync.register.webapp.context import WebContext
from tests.support.register import ACTOR, RunningRegister


class AppClient(httpx.Client):
    csrf: str = ""
    """The session's CSRF token (what the page's forms carry)."""


class WebAppServer:
    def __init__(self, register: RunningRegister) -> None:
        self.register = register

    @property
    def url(self) -> str:
        """The app's origin (``https://localhost:<port>``); pages are under ``/app``."""
        return self.register.settings.public_url

    def household(self, name: str = "Testikoti") -> str:
        return self.register.create_household(name)

    def member(self, household_id: str, name: str = "Aino") -> str:
        """A member of the household, added as the household does (keys, a signed member list version)."""
        member_id, _ = self.register.add_member(household_id, name)
        return member_id

    def context(self) -> WebContext:
        return WebContext.create(self.register.reg, self.register.settings)

    def signed_in(self, member_id: str) -> AppClient:
        """An HTTPS client holding a session of ``member_id`` made as a sign-in makes it (for tests of what a
        signed-in member may do; the sign-in itself is tested in the browser). ``client.csrf`` is its CSRF token."""
        with self.register.reg.engine.connect() as conn:
            household_id = conn.execute(
                select(db.members.c.household_id).where(db.members.c.id == member_id)
            ).scalar_one()
        response = Response()
        csrf = session.start(self.context(), response, member_id, household_id, old=None)
        client = self.client()
        cookie = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        client.cookies.set(session.COOKIE, cookie)
        client.csrf = csrf
        return client

    def client(self) -> AppClient:
        """An HTTPS client of the app trusting the register's CA, sending the app's Origin (as a browser does)."""
        return AppClient(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.register.ca_file)),
            headers={"Origin": self.url},
            follow_redirects=False,
            timeout=30,
        )

    def signin_link(self, member_id: str, ttl_s: float = links.LINK_TTL_S) -> str:
        """A one-time link that enrols a device for ``member_id``, as a technician would print it."""
        token = links.create(self.register.reg, member_id, actor=ACTOR, now=time.time(), ttl_s=ttl_s)
        return links.url(self.url, token)


def start_webapp(state_dir: Path, db_url: str | None = None) -> RunningRegister:
    state_dir.mkdir(parents=True, exist_ok=True)
    reg = RunningRegister(state_dir, db_url)
    reg.settings = dataclasses.replace(reg.settings, public_url=f"https://localhost:{reg.port}")
    reg.start()
    return reg


@pytest.fixture
def webapp_server(tmp_path: Path) -> Iterator[WebAppServer]:
    reg = start_webapp(tmp_path / "register")
    try:
        yield WebAppServer(reg)
    finally:
        reg.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def webapp_server_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebAppServer]:
    """``webapp_server`` on SQLite and on a fresh PostgreSQL database."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    reg = start_webapp(tmp_path / "register", url)
    try:
        yield WebAppServer(reg)
    finally:
        reg.close()
