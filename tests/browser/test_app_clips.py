"""Clips decrypted in the browser: a member makes their keys on the Members page, a real hub uploads a clip
encrypted to the household's member list, the Clips page fetches the ciphertext, decrypts it with the identity
kept in the browser and plays it. No request the browser sends carries the identity; another household's clip
and a request without a session are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_sync.register.webapp import memberchange
from tests.support.appkeys import (
    CLIP_SECONDS,
    RequestLog,
    directory_member,
    key_store,
    make_clip,
    secret_forms,
    sign_in,
    start_member_list,
    upload_clip,
)
from tests.support.browser import assert_accessible, screenshot
from tests.support.webapp import WebAppServer

# A function, not an expression: the page's CSP forbids eval, which Playwright uses for a bare expression.
_LOADED = "() => document.getElementById('clip-player').readyState >= 1"


@pytest.fixture
def clip(tmp_path: Path) -> bytes:
    return make_clip(tmp_path / "clip.mp4")


def test_a_clip_plays_decrypted_in_the_browser_and_the_identity_never_leaves(
    webapp_server: WebAppServer, page: Page, browser: Browser, clip: bytes, tmp_path: Path
) -> None:
    server, register = webapp_server, webapp_server.register
    h = server.household()
    aino = directory_member(server, h, "Aino")
    requests = RequestLog()
    requests.attach(page)
    sign_in(page, server.signin_link(aino))
    start_member_list(page, server.url)

    latest = memberchange.latest(register.reg, h)
    assert latest is not None
    hub = register.enroll(h)
    upload_clip(register, hub, "clip-001", clip, latest.recipients)
    # Another household's clip, with an id this member could guess.
    other = server.household("Naapuri")
    directory_member(server, other, "Naapuri")
    upload_clip(register, register.enroll(other), "clip-002", clip, latest.recipients)

    page.goto(f"{server.url}/app/clips")
    rows = page.locator("table.clips tbody tr")
    expect(rows).to_have_count(1)
    screenshot(page, "clips", "fi")
    assert_accessible(page)
    rows.get_by_role("button", name=re.compile("^Toista")).click()
    player = page.locator("#clip-player")
    expect(player).to_be_visible()
    page.wait_for_function(_LOADED)
    duration = player.evaluate("v => v.duration")
    assert abs(duration - CLIP_SECONDS) < 0.25, duration
    assert player.evaluate("v => v.src").startswith("blob:")

    page.goto(f"{server.url}/app/lang/en?next=/app/clips")
    expect(page.get_by_role("heading", level=1)).to_have_text("Camera clips")
    # By keyboard this time: the button takes focus and Enter plays.
    page.get_by_role("button", name=re.compile("^Play")).focus()
    page.keyboard.press("Enter")
    page.wait_for_function(_LOADED)
    assert page.evaluate("() => document.activeElement.id") == "clip-player"  # focus follows to the player
    screenshot(page, "clips", "en")
    assert_accessible(page)

    # The identity: in the key store only sealed, its keys not extractable; in no request, in any form.
    store = key_store(page, aino)
    [identity] = store["identities"]
    assert identity.startswith("AGE-SECRET-KEY-1")
    assert "AGE-SECRET-KEY" not in store["dump"] and identity.lower().rpartition("1")[2] not in store["dump"]
    assert '"extractable":true' not in store["dump"]
    ciphertext_fetches = [url for url, _, _ in requests.entries if url.endswith("/app/clips/clip-001/age")]
    assert len(ciphertext_fetches) == 2
    assert len(requests.entries) > 20  # the log saw the whole session: enrolment, keys, signing, playback
    assert requests.containing(secret_forms(identity)) == []

    # A clip as the hub records it (MPEG-TS), which browsers do not play in a <video>: opened, offered to save.
    upload_clip(register, hub, "clip-ts", make_clip(tmp_path / "clip.ts", container="mpegts"), latest.recipients,
                started=1_760_000_100.0)  # fmt: skip
    page.reload()
    page.locator("table.clips tbody tr").first.get_by_role("button").click()
    expect(page.locator("#clip-status")).to_contain_text("The browser cannot play this clip's format")
    download = page.locator("#clip-download")
    expect(download).to_be_visible()
    assert download.get_attribute("download") == "clip-ts.ts"
    with page.expect_download() as saved:
        download.click()
    assert Path(saved.value.path()).read_bytes()[:1] == b"\x47"  # the plaintext, on this device only

    # Scoped to the household: another household's clip is "no such clip"; no session, no ciphertext.
    own = page.context.request
    assert own.get(f"{server.url}/app/clips/clip-002/age").status == 404
    assert own.get(f"{server.url}/app/clips/clip-001/age").status == 200
    stranger = browser.new_context(ignore_https_errors=True)
    try:
        anonymous = stranger.request.get(f"{server.url}/app/clips/clip-001/age", max_redirects=0)
        assert anonymous.status == 303 and anonymous.headers["location"] == "/app/signin"
    finally:
        stranger.close()
    reads = [a for a in register.reg.audit_entries(h) if a["action"] == "clip.read"]
    assert {a["actor"] for a in reads} == {f"member:{aino}"} and len(reads) == 4
