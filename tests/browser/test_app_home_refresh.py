"""Home keeps itself current in a real browser (static/js/home.js): a reading that arrives while the page is on
screen shows within one refresh, without a reload; the section the keyboard is in is left alone (its focus kept);
and each refresh keeps the household watched."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from cloud_sync.register import db
from cloud_sync.register.notify import schema
from tests.support.appdata import add_device, home, sign_in
from tests.support.webapp import WebAppServer

DEV = "zigbee:0x00158d00aa"


def _reading(server: WebAppServer, household: str, seq: int, value: float) -> None:
    row = {
        "hub_id": "hub_x",
        "seq": seq,
        "household_id": household,
        "device_id": DEV,
        "quantity": "temperature",
        "value": value,
        "ts": time.time(),
        "received_at": time.time(),
    }
    with server.register.reg.engine.begin() as conn:
        db.insert_many_ignore(conn, db.readings, [row])


def test_a_new_reading_shows_on_home_without_a_reload(webapp_server: WebAppServer, page: Page) -> None:
    a = home(webapp_server)
    add_device(webapp_server, a.household_id, DEV, name="Keittiön anturi", room="Keittiö")
    _reading(webapp_server, a.household_id, 1, 20.5)
    with webapp_server.register.reg.engine.begin() as conn:
        conn.execute(
            schema.alarms.insert().values(
                id="hub_x.alarm.1", household_id=a.household_id, hub_id="hub_x", device_id=DEV, category="smoke",
                urgent=True, place="Keittiö", raised_at=time.time(), received_at=time.time(), late=False,
            )
        )  # fmt: skip
    sign_in(webapp_server, page, a.member_id)
    value = page.locator(f'li[data-device="{DEV}"] dd[data-quantity="temperature"]')
    expect(value).to_contain_text("20,5")
    marked = page.evaluate("() => performance.timeOrigin")
    page.evaluate("() => { window.notReloaded = true; }")
    # A keyboard user on the alarm's Acknowledge button: that section stays as it is, the button keeps the focus.
    page.get_by_role("button", name="Kuittaa").focus()
    page.evaluate("() => { window.focused = document.activeElement; }")

    _reading(webapp_server, a.household_id, 2, 23.4)
    expect(value).to_contain_text("23,4", timeout=25_000)  # within one refresh (10 s)
    assert page.evaluate("() => window.notReloaded === true && performance.timeOrigin") == marked
    assert page.evaluate("() => document.activeElement === window.focused && window.focused.isConnected")
    # The page keeps the household watched: its hubs send readings within seconds.
    assert webapp_server.register.app.state.watching.seconds_left(a.household_id) > 200
