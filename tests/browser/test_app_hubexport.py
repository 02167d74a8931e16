"""The hub's copy in a real browser: a hub answers the household's request with its archive sealed to the member
list (uploaded through the hub's real API), the data page shows it ready, and "download and open" decrypts it with
the identity kept in this browser (keystore.js) and saves the archive itself; the read is audited, and a failed
request says so."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pyrage
from playwright.sync_api import Page, expect

from cloud_sync.register.webapp import memberchange
from tests.support.appkeys import RequestLog, directory_member, key_store, secret_forms, sign_in, start_member_list
from tests.support.browser import assert_accessible, screenshot
from tests.support.register import ACTOR
from tests.support.webapp import WebAppServer


def _archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readings.jsonl", b'{"seq": 1, "device_id": "zigbee:0xa", "quantity": "temperature"}\n')
        zf.writestr("manifest.json", b'{"format": "kotihub-export/1"}')
    return buf.getvalue()


def test_the_hubs_copy_is_opened_and_saved_in_the_browser(
    webapp_server: WebAppServer, page: Page, tmp_path: Path
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
    ready_id, failed_id = (register.reg.queue_command(h, "export", {}, hub_id=hub.hub_id, actor=ACTOR)[0] for _ in "ab")

    # The hub's answer, as gateway/hub_export.py sends it: age ciphertext to the verified list, then the result.
    plain = _archive()
    ciphertext = pyrage.encrypt(plain, [pyrage.x25519.Recipient.from_str(r) for r in latest.recipients])
    s = hub.session()
    url = f"{register.url}/v1/exports/{ready_id}"
    record = {"size": len(ciphertext), "sha256": hashlib.sha256(ciphertext).hexdigest()}
    assert s.put(url, json=record, timeout=30).status_code == 200
    assert s.patch(url, params={"offset": 0}, data=ciphertext, timeout=30).json()["complete"] is True
    done = {"status": "done", "detail": {"export_id": ready_id, **record}}
    assert s.post(f"{register.url}/v1/commands/{ready_id}/result", json=done, timeout=30).status_code < 300
    failed = {"status": "failed", "detail": {"error": "no verified member list"}}
    assert s.post(f"{register.url}/v1/commands/{failed_id}/result", json=failed, timeout=30).status_code < 300

    page.goto(f"{server.url}/app/data")
    expect(page.locator(f'#hub-exports tr[data-export="{ready_id}"] td').nth(2)).to_have_text("valmis ladattavaksi")
    expect(page.locator(f'#hub-exports tr[data-export="{failed_id}"] td').nth(2)).to_have_text("ei onnistunut")
    screenshot(page, "data-hub-copy", "fi")
    assert_accessible(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Lataa ja avaa").click()
    saved = tmp_path / "copy.zip"
    info.value.save_as(saved)
    assert saved.read_bytes() == plain
    expect(page.locator("#hub-export-status")).to_have_text("Kopio avattu ja tallennettu.")

    audit = register.reg.audit_entries(h)
    assert any(e["action"] == "hub_export.read" and e["actor"] == f"member:{aino}" for e in audit)
    # The identity opened it here: no request carried it, in any form.
    [identity] = key_store(page, aino)["identities"]
    assert requests.containing(secret_forms(identity)) == []
    assert [u for u, _, _ in requests.entries if u.endswith(f"/app/data/hub-export/{ready_id}/age")] != []
