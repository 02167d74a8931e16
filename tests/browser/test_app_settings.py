"""Settings in a real browser: restrict a category (camera recording), rectify a device's name and room, a
member's contact and the escalation policy, marketing consents; each round trip read back from the register,
audited as the member; a forged POST without the CSRF token and another household's device are refused."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import select

from cloud_sync.register import db, restrictions
from cloud_sync.register.notify import contacts, schema
from tests.support.appdata import add_device, english, home, sign_in
from tests.support.browser import assert_accessible, screenshot
from tests.support.webapp import WebAppServer


def test_restrict_rectify_contacts_policy_and_consents_round_trip(webapp_server: WebAppServer, page: Page) -> None:
    a = home(webapp_server, hub=True)
    assert a.hub is not None
    reg = webapp_server.register.reg
    sign_in(webapp_server, page, a.member_id)
    add_device(webapp_server, a.household_id, "zigbee:0xd1", name="Anturi 1", room="Eteinen", hub_id=a.hub.hub_id)
    actor = f"member:{a.member_id}"

    def audited(action: str) -> bool:
        return any(e["action"] == action and e["actor"] == actor for e in reg.audit_entries(a.household_id))

    page.get_by_role("link", name="Asetukset").click()
    screenshot(page, "settings", "fi")
    assert_accessible(page)

    # Restrict camera recording: recorded, sent to the hub, shown.
    camera = page.locator('li[data-category="camera"]')
    camera.get_by_role("button", name="Rajoita").click()
    expect(page.locator('li[data-category="camera"]')).to_have_attribute("data-restricted", "yes")
    expect(page.locator("#restrict .ok")).to_have_text("Tallennettu.")
    assert restrictions.restricted(reg, a.household_id) == {"camera"}
    with reg.engine.connect() as conn:
        c = db.commands.c
        sent = conn.execute(select(c.hub_id, c.args).where(c.kind == "restrict")).all()
    assert [(s.hub_id, s.args["category"], s.args["on"]) for s in sent] == [(a.hub.hub_id, "camera", True)]
    assert audited("restriction.change")
    # The data and erase pages no longer show the camera's counts.
    page.goto(f"{webapp_server.url}/app/data")
    for kind in ("clips", "clip_records"):
        expect(page.locator(f'#held-counts tr[data-kind="{kind}"] td')).to_have_text("rajoitettu")
    expect(page.locator('#held-counts tr[data-kind="readings"] td')).to_have_text("0")
    page.goto(f"{webapp_server.url}/app/erase")
    expect(page.locator('#erase-counts tr[data-kind="clips"] td')).to_have_text("rajoitettu")
    page.goto(f"{webapp_server.url}/app/settings")

    # Rectify the device: the register's row at once, a rename command to its hub.
    form = page.locator('form[data-device="zigbee:0xd1"]')
    form.get_by_label("Nimi").fill("Eteisen palovaroitin")
    form.get_by_label("Huone").fill("Eteinen ja tuulikaappi")
    form.get_by_role("button", name="Tallenna").click()
    expect(page.locator("#device .ok")).to_be_visible()
    with reg.engine.connect() as conn:
        row = conn.execute(select(db.devices.c.name, db.devices.c.room)).one()
        rename = conn.execute(select(db.commands.c.hub_id).where(db.commands.c.kind == "rename")).scalars().all()
    assert tuple(row) == ("Eteisen palovaroitin", "Eteinen ja tuulikaappi")
    assert rename == [a.hub.hub_id] and audited("device.rectify")

    # A contact: a bad phone number is refused with the reason and nothing saved; a good one is stored.
    member = page.locator(f'form[data-member="{a.member_id}"]')
    member.get_by_label("Puhelin (+358…)").fill("0401234567")
    member.get_by_role("button", name="Tallenna").click()
    expect(page.locator("#contact .error")).to_have_text("Ei tallennettu: tarkista arvot.")
    member = page.locator(f'form[data-member="{a.member_id}"]')
    member.get_by_label("Puhelin (+358…)").fill("+358 40 123 4567")
    member.get_by_label("Kieli").select_option("en")
    member.get_by_role("button", name="Tallenna").click()
    expect(page.locator("#contact .ok")).to_be_visible()
    (view,) = contacts.contacts(reg, a.household_id)
    assert (view.phone, view.language) == ("+358401234567", "en")
    assert audited("contact.change")

    # The escalation policy: quiet hours and a muted health category.
    page.get_by_label("Alkaa").fill("23:00")
    page.get_by_label("paristo vähissä").check()
    page.locator("#policy").get_by_role("button", name="Tallenna").click()
    expect(page.locator("#policy .ok")).to_be_visible()
    policy = contacts.get_policy(reg, a.household_id)
    assert policy.quiet_start == "23:00" and policy.restricted == ("battery_low",)
    assert audited("policy.change")

    # Consents: both at once is refused with a sentence saying why; consent alone is stored.
    page.get_by_label("Saa lähettää minulle markkinointia").check()
    page.get_by_label("Kiellän kaiken suoramarkkinoinnin").check()
    page.locator("#consents").get_by_role("button", name="Tallenna").click()
    expect(page.locator("#consents .error")).to_have_text("Et voi sekä antaa lupaa että kieltää.")
    assert reg.consent(a.household_id).marketing is False
    # The page shows what is stored again (nothing was saved): consent alone now.
    expect(page.get_by_label("Kiellän kaiken suoramarkkinoinnin")).not_to_be_checked()
    page.get_by_label("Saa lähettää minulle markkinointia").check()
    page.locator("#consents").get_by_role("button", name="Tallenna").click()
    expect(page.locator("#consents .ok")).to_be_visible()
    assert reg.consent(a.household_id).marketing is True and audited("consents.change")

    english(page)
    expect(page.locator('li[data-category="camera"]')).to_contain_text("Camera recording: Restricted")
    screenshot(page, "settings", "en")
    assert_accessible(page)


def test_forged_posts_and_another_households_device_are_refused(webapp_server: WebAppServer, page: Page) -> None:
    a, b = home(webapp_server), home(webapp_server, member="Bertta")
    add_device(webapp_server, b.household_id, "zigbee:0xbb", name="Bertan anturi", room="Sauna", hub_id="hub_b")
    sign_in(webapp_server, page, a.member_id)
    page.goto(f"{webapp_server.url}/app/settings")
    csrf = page.locator('#consents input[name="csrf"]').get_attribute("value") or ""
    url = f"{webapp_server.url}/app/settings"

    # No CSRF token, or a wrong one: 403 and nothing changes.
    for form in ({"category": "camera", "on": "yes"}, {"category": "camera", "on": "yes", "csrf": "x" * len(csrf)}):
        assert page.request.post(f"{url}/restrict", form=form).status == 403
    assert restrictions.restricted(webapp_server.register.reg, a.household_id) == set()

    # B's device through A's session: 404, B's name untouched.
    r = page.request.post(f"{url}/device", form={"csrf": csrf, "device_id": "zigbee:0xbb", "name": "mine", "room": ""})
    assert r.status == 404
    with webapp_server.register.reg.engine.connect() as conn:
        assert conn.execute(select(db.devices.c.name)).scalar() == "Bertan anturi"
    # B's member's contact likewise.
    r = page.request.post(
        f"{url}/contact",
        form={"csrf": csrf, "member_id": b.member_id, "phone": "+358401111111", "language": "fi", "call_order": "0"},
    )
    assert r.status == 404
    with webapp_server.register.reg.engine.connect() as conn:
        assert conn.execute(select(schema.contacts.c.phone)).scalars().all() == []
