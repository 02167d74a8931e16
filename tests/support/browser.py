"""Playwright driving Debian's Chromium (``/usr/bin/chromium``, headless; Playwright's own driver, no browser
download), with a CDP virtual WebAuthn authenticator, screenshots and axe-core checks.

Fixtures: ``browser`` (one Chromium per test module) and ``page`` (a fresh context per test: its own cookies and
storage, phone-sized, trusting nothing but ignoring the test register's self-made certificate).

Typical use::

    def test_x(webapp_server, page):
        auth = add_authenticator(page)
        page.goto(webapp_server.signin_link(member_id))
        ...
        screenshot(page, "home", "fi")
        assert_accessible(page)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import Browser, CDPSession, Page, Playwright, sync_playwright

CHROMIUM: Final = os.environ.get("KOTIHUB_CHROMIUM", "/usr/bin/chromium")
ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ROOT: Final = Path(__file__).resolve().parents[2]
SCREENSHOTS: Final = ROOT / "artifacts" / "screenshots"
AXE: Final = ROOT / "cloud_sync" / "register" / "webapp" / "static" / "vendor" / "axe-core" / "axe.min.js"
PHONE: Final = {"width": 390, "height": 844}
"""A phone-sized viewport (CSS pixels)."""


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    # launch() gives Chromium a fresh temporary user-data dir of its own (removed on close), so runs never share a
    # profile; each test then gets a fresh context (cookies, storage) on top.
    b = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(ARGS))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport=PHONE, ignore_https_errors=True, locale="fi-FI", has_touch=True, is_mobile=False
    )
    context.set_default_timeout(15_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@dataclass
class Authenticator:
    """A virtual platform authenticator in the page's browser context (CDP ``WebAuthn`` domain)."""

    cdp: CDPSession
    authenticator_id: str

    def credentials(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )["credentials"]
        return out

    def add_credential(self, credential: dict[str, Any]) -> None:
        """Puts a credential (as :meth:`credentials` returns them: private key, counter) into this authenticator:
        how a test clones a passkey."""
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.authenticator_id, "credential": credential})

    def remove(self) -> None:
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.authenticator_id})


def add_authenticator(page: Page) -> Authenticator:
    """A CTAP2 internal (platform) authenticator with resident keys and user verification, which answers every
    ceremony at once as if the user touched it and passed verification."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    result = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return Authenticator(cdp, result["authenticatorId"])


def screenshot(page: Page, name: str, lang: str) -> Path:
    """A full-page screenshot to ``artifacts/screenshots/<name>.<lang>.png`` (CI keeps the folder)."""
    if not re.fullmatch(r"[a-z0-9_-]+", name) or lang not in ("fi", "en"):
        raise ValueError(f"bad screenshot name {name!r} / {lang!r}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.{lang}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_accessible(page: Page) -> list[dict[str, Any]]:
    """Runs axe-core (from static/vendor, as ``ensure_npm_packages`` put it there) on the page and fails on any
    serious or critical violation. Returns the minor and moderate ones."""
    if not AXE.is_file():
        raise AssertionError(f"{AXE} is missing: run `bash -c 'source scripts/lib.sh; ensure_npm_packages'`")
    # Injected through CDP-level script evaluation, which the page's Content-Security-Policy does not govern.
    page.evaluate(AXE.read_text())
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = result["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    if bad:
        lines = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}" for v in bad]
        raise AssertionError(f"axe-core found on {page.url}:\n" + "\n".join(lines))
    return [v for v in violations if v not in bad]
