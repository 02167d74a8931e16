"""Charts in a real browser: six months of one sensor drawn by uPlot from server-side buckets (< 200 KB), the day
and week views, screenshots in Finnish and English, axe clean; another household's sensor and a restricted
category are refused."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from playwright.sync_api import Page, expect

from tests.support.appdata import add_device, add_readings, english, home, sign_in
from tests.support.browser import assert_accessible, screenshot
from tests.support.webapp import WebAppServer

DEV, Q = "zigbee:0x00158d0001", "temperature"


def test_six_months_of_a_sensor_are_drawn_from_a_small_download(webapp_server: WebAppServer, page: Page) -> None:
    a = home(webapp_server)
    sign_in(webapp_server, page, a.member_id)
    add_device(webapp_server, a.household_id, DEV, name="Olohuoneen anturi", room="Olohuone")
    n = add_readings(webapp_server, a.household_id, DEV, Q, days=183, step_s=300)

    page.get_by_role("link", name="Kuvaajat").click()
    expect(page.get_by_role("heading", name="Kuvaajat")).to_be_visible()
    screenshot(page, "charts", "fi")
    assert_accessible(page)
    page.get_by_role("link", name="Olohuoneen anturi, Lämpötila (°C): 6 kuukautta").click()
    figure = page.locator("#chart")
    expect(figure).to_have_attribute("data-state", "drawn")
    assert int(figure.get_attribute("data-points") or 0) == n, "every reading of the six months is in a bucket"
    assert 10 <= int(figure.get_attribute("data-buckets") or 0) <= 1500
    assert int(figure.get_attribute("data-bytes") or 0) < 200 * 1024
    expect(page.locator("#chart canvas")).to_have_count(1)
    expect(page.locator("#chart-status")).to_contain_text("Kuvaaja piirretty")
    screenshot(page, "chart_6mo", "fi")
    assert_accessible(page)

    # The widest chart the endpoint allows is still under 200 KB for six months.
    q = urlencode({"device": DEV, "quantity": Q, "span": "6mo", "width": 10_000})
    wide = page.request.get(f"{webapp_server.url}/app/charts/data?{q}")
    assert wide.status == 200 and len(wide.body()) < 200 * 1024
    assert sum(json.loads(wide.body())["count"]) == n

    page.get_by_role("link", name="Päivä").click()
    expect(figure).to_have_attribute("data-state", "drawn")
    assert int(figure.get_attribute("data-points") or 0) in (287, 288)
    english(page)
    expect(figure).to_have_attribute("data-state", "drawn")
    expect(page.locator("#chart-status")).to_contain_text("Chart drawn")
    screenshot(page, "chart_day", "en")
    page.get_by_role("link", name="All sensors").click()
    screenshot(page, "charts", "en")
    assert_accessible(page)


def test_another_households_sensor_and_a_restricted_category_are_not_shown(
    webapp_server: WebAppServer, page: Page
) -> None:
    a, b = home(webapp_server), home(webapp_server, member="Bertta")
    add_readings(webapp_server, a.household_id, DEV, Q, days=1, step_s=600)
    add_readings(webapp_server, b.household_id, "zigbee:0xbbbb", Q, days=1, step_s=600, hub_id="hub_b")
    sign_in(webapp_server, page, a.member_id)

    def data(device: str) -> int:
        q = urlencode({"device": device, "quantity": Q, "span": "day"})
        return page.request.get(f"{webapp_server.url}/app/charts/data?{q}").status

    def chart(device: str) -> int:
        q = urlencode({"device": device, "quantity": Q, "span": "day"})
        return page.request.get(f"{webapp_server.url}/app/chart?{q}").status

    assert data(DEV) == 200 and chart(DEV) == 200
    assert data("zigbee:0xbbbb") == 404 and chart("zigbee:0xbbbb") == 404
    page.goto(f"{webapp_server.url}/app/charts")
    expect(page.get_by_text("zigbee:0xbbbb")).to_have_count(0)

    # Restrict sensors in the settings: the charts page shows none, the data endpoint refuses.
    page.goto(f"{webapp_server.url}/app/settings")
    page.locator('li[data-category="sensors"]').get_by_role("button", name="Rajoita").click()
    expect(page.locator('li[data-category="sensors"]')).to_have_attribute("data-restricted", "yes")
    page.goto(f"{webapp_server.url}/app/charts")
    expect(page.get_by_text("Olet rajoittanut anturitietojen käsittelyä")).to_be_visible()
    expect(page.locator("table")).to_have_count(0)
    assert data(DEV) == 404 and chart(DEV) == 404
    screenshot(page, "charts_restricted", "fi")
    assert_accessible(page)
