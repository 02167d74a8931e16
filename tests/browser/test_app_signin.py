"""The app in a real browser: enrol a device by one-time link, sign out, sign in with the passkey."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.support.browser import add_authenticator
from tests.support.webapp import WebAppServer


def test_enrol_by_link_then_sign_out_and_in_with_the_passkey(webapp_server: WebAppServer, page: Page) -> None:
    h = webapp_server.household()
    member = webapp_server.member(h)
    auth = add_authenticator(page)
    page.goto(webapp_server.signin_link(member))
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(re.compile(r"/app/home$"))
    assert len(auth.credentials()) == 1
    page.get_by_role("button", name="Kirjaudu ulos").click()
    expect(page).to_have_url(re.compile(r"/app/signin"))
    page.get_by_role("button", name="Kirjaudu pääsyavaimella").click()
    expect(page).to_have_url(re.compile(r"/app/home$"))
