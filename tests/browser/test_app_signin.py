"""Passkey sign-in in Chromium beyond the happy path: a cloned passkey (its signature counter behind the
register's) is refused and the real one keeps working; without a passkey on the device sign-in fails with a message
and creates no session (driven by keyboard alone); the vendored packages load."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from cloud_sync.register.webapp import session
from tests.support.browser import PHONE, add_authenticator
from tests.support.webapp import WebAppServer


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/app/signin")
    page.get_by_role("button", name="Kirjaudu pääsyavaimella").click()


def test_a_cloned_passkey_with_a_stale_counter_is_refused(
    webapp_server: WebAppServer, page: Page, browser: Browser
) -> None:
    base = webapp_server.url
    member = webapp_server.member(webapp_server.household())
    auth = add_authenticator(page)
    page.goto(webapp_server.signin_link(member))
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(f"{base}/app/home")
    [copied] = auth.credentials()  # the key as it is now: a thief's copy

    page.get_by_role("button", name="Kirjaudu ulos").click()
    _sign_in(page, base)  # the owner signs in again: the counter moves on
    expect(page).to_have_url(f"{base}/app/home")

    thief = browser.new_context(viewport=PHONE, ignore_https_errors=True, locale="fi-FI")
    try:
        other = thief.new_page()
        add_authenticator(other).add_credential(copied)
        _sign_in(other, base)
        expect(other.get_by_role("status")).to_contain_text(
            "Kirjautuminen ei onnistunut. Yritä uudelleen. (passkey_refused)"
        )
        assert other.url.endswith("/app/signin")
        assert not [c for c in thief.cookies() if c["name"] == session.COOKIE]
    finally:
        thief.close()

    page.get_by_role("button", name="Kirjaudu ulos").click()
    _sign_in(page, base)  # the real passkey still works
    expect(page).to_have_url(f"{base}/app/home")


def test_sign_in_without_a_passkey_on_this_device_fails_cleanly(webapp_server: WebAppServer, page: Page) -> None:
    """Also by keyboard alone: the skip link comes first, the button is reached with Tab and pressed with Enter."""
    add_authenticator(page)  # an authenticator with no passkey for this site
    page.goto(f"{webapp_server.url}/app/signin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(10):
        if page.evaluate("document.activeElement.id") == "signin":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "signin"
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(re.compile("Kirjautuminen ei onnistunut"))
    assert page.url.endswith("/app/signin")
    assert not [c for c in page.context.cookies() if c["name"] == session.COOKIE]


def test_vendored_packages_load_through_the_import_map(webapp_server: WebAppServer, page: Page) -> None:
    """The npm packages the app serves itself resolve by their names in a page, under its Content-Security-Policy
    (age-encryption pulls @noble/* and @scure/base, one of them at a second version, through the map's scopes)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{webapp_server.url}/app/signin")
    kinds = page.evaluate(
        """async () => {
            const age = await import("age-encryption");
            const uplot = await import("uplot");
            const id = await age.generateIdentity();
            const e = new age.Encrypter();
            e.addRecipient(await age.identityToRecipient(id));
            const d = new age.Decrypter();
            d.addIdentity(id);
            const plain = await d.decrypt(await e.encrypt("hei"), "text");
            return [typeof uplot.default, plain];
        }"""
    )
    assert kinds == ["function", "hei"]
    assert errors == []


def test_api_helper_sends_the_csrf_token(webapp_server: WebAppServer, page: Page) -> None:
    """static/js/api.js, which the app's pages use for fetch: a state change with it passes the CSRF check, the
    same fetch without the token is refused."""
    h = webapp_server.household()
    member = webapp_server.member(h)
    add_authenticator(page)
    page.goto(webapp_server.signin_link(member))
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(f"{webapp_server.url}/app/home")
    statuses = page.evaluate(
        """async () => {
            const { api, ApiError } = await import("/app/static/js/api.js");
            const bare = await fetch("/app/alarms/nope/ack", { method: "POST" });
            let withToken;
            try { await api("/app/alarms/nope/ack", { method: "POST" }); } catch (e) { withToken = [e.status, e.code]; }
            return [bare.status, withToken];
        }"""
    )
    # Without the token: 403 (CSRF); with it: past the check, to "no such alarm here".
    assert statuses == [403, [404, "no_alarm"]]
