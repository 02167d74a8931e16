"""A household with data, and a member signed in to the app in a real browser, for the page tests of 18b (charts,
data, erase, settings).

The household's data goes into the register's tables the way ingest leaves it (one batch insert), so a test of
six months does not send six months through the uplink; the hub, where a test needs one, is enrolled for real.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from playwright.sync_api import Page, expect
from sqlalchemy import insert

from cloud_sync.register import db
from tests.support.browser import add_authenticator
from tests.support.register import HubIdentity
from tests.support.webapp import WebAppServer

DAY = 86_400.0


@dataclass(frozen=True)
class Home:
    household_id: str
    member_id: str
    hub: HubIdentity | None


def home(webapp_server: WebAppServer, *, hub: bool = False, member: str = "Aino") -> Home:
    """A household (with a really enrolled hub if asked) and a member."""
    enrolled = webapp_server.register.enroll() if hub else None
    h = enrolled.household_id if enrolled is not None else webapp_server.household()
    return Home(h, webapp_server.member(h, member), enrolled)


def sign_in(webapp_server: WebAppServer, page: Page, member_id: str) -> None:
    """Enrol a passkey for the member by one-time link: the page is then signed in (Finnish, the default)."""
    add_authenticator(page)
    page.goto(webapp_server.signin_link(member_id))
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(re.compile(r"/app/home$"))


def english(page: Page) -> None:
    page.get_by_role("link", name="In English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def finnish(page: Page) -> None:
    page.get_by_role("link", name="Suomeksi").click()
    expect(page.locator("html")).to_have_attribute("lang", "fi")


def add_device(
    webapp_server: WebAppServer, household_id: str, device_id: str, *, name: str, room: str, hub_id: str = "hub_x"
) -> None:
    with webapp_server.register.reg.engine.begin() as conn:
        conn.execute(
            insert(db.devices).values(
                household_id=household_id,
                device_id=device_id,
                hub_id=hub_id,
                kind="sensor",
                name=name,
                room=room,
                model="",
                updated_at=time.time(),
            )
        )


def add_readings(
    webapp_server: WebAppServer,
    household_id: str,
    device_id: str,
    quantity: str,
    *,
    days: float,
    step_s: float,
    hub_id: str = "hub_x",
    first_seq: int = 0,
) -> int:
    """Readings every ``step_s`` over the last ``days`` (ending a minute ago); returns how many."""
    now = time.time()
    start = now - days * DAY + 150.0
    n = int((now - 60.0 - start) // step_s)
    rows = [
        {
            "hub_id": hub_id,
            "seq": first_seq + i,
            "household_id": household_id,
            "device_id": device_id,
            "quantity": quantity,
            "value": 20.0 + (i % 97) / 10.0,
            "ts": start + i * step_s,
            "received_at": start + i * step_s,
        }
        for i in range(n)
    ]
    with webapp_server.register.reg.engine.begin() as conn:
        for i in range(0, len(rows), 10_000):
            db.insert_many_ignore(conn, db.readings, rows[i : i + 10_000])
    return n
