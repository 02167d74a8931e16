"""Näytä tietoni in a real browser: the plain-language notice, the counts, the export downloaded (everything of
this household, nothing of another), the hub asked for its copy; fi and en screenshots, axe clean."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy import select

from cloud_sync.register import db
from tests.support.appdata import add_readings, english, home, sign_in
from tests.support.browser import assert_accessible, screenshot
from tests.support.webapp import WebAppServer


def test_the_household_sees_and_downloads_its_data_and_asks_the_hub(
    webapp_server: WebAppServer, page: Page, tmp_path: Path
) -> None:
    a = home(webapp_server, hub=True)
    b = home(webapp_server, member="Bertta")
    assert a.hub is not None
    n = add_readings(
        webapp_server, a.household_id, "zigbee:0xa", "temperature", days=2, step_s=600, hub_id=a.hub.hub_id
    )
    add_readings(webapp_server, b.household_id, "zigbee:0xb", "temperature", days=2, step_s=600, hub_id="hub_b")
    sign_in(webapp_server, page, a.member_id)

    page.get_by_role("link", name="Näytä tietoni").click()
    expect(page.get_by_role("heading", name="Mitä tietoja pidämme")).to_be_visible()
    expect(page.get_by_text("säilytetään 6 kuukautta")).to_be_visible()
    expect(page.locator('#held-counts tr[data-kind="readings"] td')).to_have_text(str(n))
    expect(page.locator('#held-counts tr[data-kind="members"] td')).to_have_text("1")
    screenshot(page, "data", "fi")
    assert_accessible(page)

    with page.expect_download() as info:
        page.get_by_role("link", name="Lataa kaikki tietosi").click()
    out = tmp_path / "export.ndjson"
    info.value.save_as(out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    readings = [r for r in records if r["type"] == "reading"]
    assert len(readings) == n and {r["device_id"] for r in readings} == {"zigbee:0xa"}
    assert b.household_id not in out.read_text() and "zigbee:0xb" not in out.read_text()
    assert [r["id"] for r in records if r["type"] == "household"] == [a.household_id]
    audit = webapp_server.register.reg.audit_entries(a.household_id)
    assert any(e["action"] == "household.export" and e["actor"] == f"member:{a.member_id}" for e in audit)

    # The hub's copy: an export command to the household's hub, shown as waiting for it.
    page.get_by_role("button", name="Pyydä keskittimen kopiota").click()
    expect(page.get_by_text("Pyyntö lähetetty keskittimille.")).to_be_visible()
    expect(page.locator("#hub-exports tbody tr")).to_have_count(1)
    expect(page.locator("#hub-exports tbody td").nth(2)).to_have_text("odottaa keskitintä")
    with webapp_server.register.reg.engine.connect() as conn:
        c = db.commands.c
        sent = conn.execute(select(c.hub_id, c.issued_by).where(c.kind == "export")).all()
    assert [tuple(s) for s in sent] == [(a.hub.hub_id, f"member:{a.member_id}")]

    english(page)
    expect(page.get_by_role("heading", name="What we hold")).to_be_visible()
    expect(page.locator("#hub-exports tbody td").nth(2)).to_have_text("waiting for the hub")
    screenshot(page, "data", "en")
    assert_accessible(page)
