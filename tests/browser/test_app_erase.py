"""Poista tietoni in a real browser: the confirmation with counts, the erasure, the register's receipt verified on
the page, the hub's progress followed until its signed receipt arrives, and the receipt verified again by the
member's own means (openssl on the downloaded files, and cloud_sync.receipts); fi and en screenshots, axe clean.

The hub is really enrolled (its certificate from the register's CA) and answers its ``erase`` command over mTLS
with a receipt signed by its own key, as ``gateway.privacy`` does; another household is untouched."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect

from cloud_sync import receipts
from cloud_sync.register import mydata
from tests.support.appdata import add_readings, english, home, sign_in
from tests.support.browser import assert_accessible, screenshot
from tests.support.register import HubIdentity
from tests.support.webapp import WebAppServer


def _hub_answers_its_erase(url: str, hub: HubIdentity) -> None:
    """What the hub's uplink does with an ``erase`` command: erase, sign a receipt embedding the register's, report."""
    session = hub.session()
    commands = session.get(f"{url}/v1/commands", timeout=10).json()
    (erase,) = [c for c in commands if c["kind"] == "erase"]
    key = serialization.load_pem_private_key(hub.key.read_bytes(), password=None)
    body = {
        "receipt_id": erase["args"]["register_receipt"]["receipt"]["receipt_id"],
        "side": "hub",
        "scope": "all",
        "requested_at": time.time(),
        "erased": {"frames": 3},
        "register": erase["args"]["register_receipt"],
    }
    signed = receipts.sign(key, body, cert_pem=hub.cert.read_text())  # type: ignore[arg-type]
    r = session.post(
        f"{url}/v1/commands/{erase['id']}/result", json={"status": "done", "detail": {"receipt": signed}}, timeout=10
    )
    assert r.status_code == 200, r.text


def test_erase_is_confirmed_followed_and_its_receipt_verified(
    webapp_server: WebAppServer, page: Page, tmp_path: Path
) -> None:
    a = home(webapp_server, hub=True)
    b = home(webapp_server, member="Bertta")
    assert a.hub is not None
    n = add_readings(
        webapp_server, a.household_id, "zigbee:0xa", "temperature", days=1, step_s=600, hub_id=a.hub.hub_id
    )
    kept = add_readings(webapp_server, b.household_id, "zigbee:0xb", "temperature", days=1, step_s=600, hub_id="hub_b")
    sign_in(webapp_server, page, a.member_id)

    page.get_by_role("link", name="Poista tietoni").click()
    expect(page.locator('#erase-counts tr[data-kind="readings"] td')).to_have_text(str(n))
    screenshot(page, "erase", "fi")
    assert_accessible(page)
    # Without the box ticked the browser does not send it; a forged POST without it is refused with the page again.
    csrf = page.locator('form[action="/app/erase"] input[name="csrf"]').get_attribute("value") or ""
    refused = page.request.post(f"{webapp_server.url}/app/erase", form={"csrf": csrf})
    assert refused.status == 422 and "Vahvista poisto" in refused.text()
    assert mydata.held(webapp_server.register.reg, a.household_id)["readings"] == n

    page.get_by_label("Ymmärrän, että tiedot poistetaan pysyvästi").check()
    page.get_by_role("button", name="Poista kaikki tietoni").click()
    expect(page).to_have_url(re.compile(r"/app/erase/done/"))
    expect(page.locator("#receipt-verified")).to_be_visible()
    expect(page.locator(f'#erase-hubs tr[data-hub="{a.hub.hub_id}"] .state')).to_have_text("odottaa keskitintä")
    assert mydata.held(webapp_server.register.reg, a.household_id)["readings"] == 0
    assert mydata.held(webapp_server.register.reg, b.household_id)["readings"] == kept

    _hub_answers_its_erase(webapp_server.url, a.hub)
    expect(page.locator(f'#erase-hubs tr[data-hub="{a.hub.hub_id}"] .state')).to_have_text(
        "poistettu, kuitti tarkistettu", timeout=20_000
    )
    expect(page.locator("#erase-progress")).to_have_text("Kaikki keskittimet ovat vastanneet.")
    screenshot(page, "erase_done", "fi")
    assert_accessible(page)

    # The member checks the receipt without us: the files the page offers (the hub's once it is in), and openssl.
    page.reload()
    files: dict[str, Path] = {}
    for name in ("receipt.json", "register-ca.crt", "receipt-body.json", "receipt.sig", f"hub-{a.hub.hub_id}.json"):
        with page.expect_download() as info:
            page.locator("#receipt-files a", has_text=name).click()
        files[name] = tmp_path / name
        info.value.save_as(files[name])
    pub = tmp_path / "register.pub"
    pub.write_bytes(
        subprocess.run(
            ["openssl", "x509", "-in", files["register-ca.crt"], "-pubkey", "-noout"],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
    )
    ok = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", pub, "-signature", files["receipt.sig"], files["receipt-body.json"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and "Verified OK" in ok.stdout
    signed = json.loads(files["receipt.json"].read_text())
    assert json.loads(files["receipt-body.json"].read_text()) == signed["receipt"]
    assert signed["receipt"]["erased"]["readings"] == n
    ca = files["register-ca.crt"].read_bytes()
    assert receipts.verify(signed, ca).signer == "register"
    hub_receipt = json.loads(files[f"hub-{a.hub.hub_id}.json"].read_text())
    assert receipts.verify(hub_receipt, ca) == receipts.Verified(f"hub:{a.household_id}:{a.hub.hub_id}", ("register",))
    # A changed count no longer verifies, with openssl either.
    forged = tmp_path / "forged.json"
    forged.write_bytes(files["receipt-body.json"].read_bytes().replace(b'"readings":', b'"readings":1'))
    bad = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", pub, "-signature", files["receipt.sig"], forged],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0

    english(page)
    expect(page.locator(f'#erase-hubs tr[data-hub="{a.hub.hub_id}"] .state')).to_have_text("erased, receipt checked")
    screenshot(page, "erase_done", "en")
    assert_accessible(page)


def test_the_erasure_link_is_for_one_erasure_and_cannot_be_forged(webapp_server: WebAppServer, page: Page) -> None:
    a = home(webapp_server)
    sign_in(webapp_server, page, a.member_id)
    english(page)
    page.goto(f"{webapp_server.url}/app/erase")
    screenshot(page, "erase", "en")
    page.get_by_label("I understand that the data is erased permanently").check()
    page.get_by_role("button", name="Erase all my data").click()
    expect(page).to_have_url(re.compile(r"/app/erase/done/"))
    expect(page.get_by_text("Your household has no hubs.")).to_be_visible()
    token = page.url.rsplit("/", 1)[1]
    # Signed out by the erasure itself (the members are gone): the link still shows the receipt.
    assert page.request.get(f"{webapp_server.url}/app/home", max_redirects=0).status == 303
    assert page.request.get(f"{webapp_server.url}/app/erase/done/{token}/status").status == 200
    forged = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    assert page.request.get(f"{webapp_server.url}/app/erase/done/{forged}/status").status == 403
    assert page.request.get(f"{webapp_server.url}/app/erase/done/{token}/file/passwd").status == 404
