"""The member list's UI in real browsers: Aino starts the list on her phone, invites Eero, Eero makes his keys on
his own phone, Aino checks his pairing code and signs him in; the hub's verifier (gateway/members.py, pinned to
Aino's code as at installation) accepts every version signed in the browser, and the next clip, encrypted to
the hub's recipients, plays on Eero's phone. Then remove and rotate. A list signed by someone who is not a member
is refused, and so is a signer whose code does not match."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy import delete, insert

from cloud_sync import memberlist as ml
from cloud_sync.register import db
from cloud_sync.register.webapp import memberchange
from gateway.members import HubMembers
from tests.support.appkeys import (
    CLIP_SECONDS,
    directory_member,
    make_clip,
    make_keys,
    sign_in,
    start_member_list,
    upload_clip,
)
from tests.support.browser import PHONE, assert_accessible, screenshot
from tests.support.webapp import WebAppServer

_LOADED = "() => document.getElementById('clip-player').readyState >= 1"

# Eero, not (yet) a member, signs a list that adds himself and submits it with his session's CSRF token.
_SELF_ADD_JS = """async () => {
  const keys = await import('/app/static/js/keystore.js');
  const ml = await import('/app/static/js/memberlist.js');
  const root = document.getElementById('members');
  const me = root.dataset.member;
  const headers = {'Content-Type': 'application/json', 'X-CSRF-Token': root.dataset.csrf};
  const log = await (await fetch('/app/members/log')).json();
  const latest = await ml.audit(root.dataset.household, log, null);
  const mine = await keys.publicKeys(me);
  const members = [...latest.body.members, {id: me, ...mine}];
  const body = new TextEncoder().encode(ml.canonical(
    root.dataset.household, latest.body.version + 1, latest.digest, members));
  const sig = await keys.sign(me, ml.signedBytes(body));
  const propose = await fetch('/app/members/propose', {method: 'POST', headers,
    body: JSON.stringify({action: 'remove', member: latest.body.members[0].id})});
  const sign = await fetch('/app/members/sign', {method: 'POST', headers,
    body: JSON.stringify({body: ml.toBase64(body), signer: me, sig})});
  return {propose: [propose.status, (await propose.json()).error], sign: [sign.status, (await sign.json()).error]};
}"""


@pytest.fixture
def second_page(browser: Browser) -> Iterator[Page]:
    """Another phone: its own context, so its own cookies and its own IndexedDB."""
    context = browser.new_context(viewport=PHONE, ignore_https_errors=True, locale="fi-FI", has_touch=True)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _version(page: Page) -> str:
    return page.locator("table.members caption").inner_text()


def test_invite_add_remove_rotate_signed_in_the_browser_and_verified_by_the_hub(
    webapp_server: WebAppServer, page: Page, second_page: Page, tmp_path: Path
) -> None:
    server, register = webapp_server, webapp_server.register
    base = server.url
    h = server.household()
    aino = directory_member(server, h, "Aino")
    sign_in(page, server.signin_link(aino))
    aino_code = start_member_list(page, base)
    # Installation: the technician pins the code Aino's phone shows; the hub anchors the register's log in it.
    (tmp_path / "hub").mkdir()
    hub = HubMembers(tmp_path / "hub")
    hub.pin(aino_code, memberchange.chain(register.reg, h))
    assert hub.version == 1 and len(hub.recipients) == 1
    aino_first_age = hub.recipients[0]

    page.get_by_label("Nimi").fill("Eero")
    page.get_by_role("button", name="Luo kutsulinkki").click()
    expect(page).to_have_url(f"{base}/app/members")  # a reload shows the page, it does not invite again
    link = page.locator("#invite-link").get_attribute("href")
    assert link is not None and link.startswith(f"{base}/app/enrol/")
    screenshot(page, "members", "fi")
    assert_accessible(page)

    eero = second_page
    sign_in(eero, link)
    eero_code = make_keys(eero, base)
    expect(eero.get_by_text("Avaimesi odottavat")).to_be_visible()
    assert eero_code != aino_code
    # Not a member: he can neither have a change proposed nor sign one in.
    refused = eero.evaluate(_SELF_ADD_JS)
    assert refused == {"propose": [403, "not_a_member"], "sign": [422, "member_list_bad_signature"]}

    page.reload()
    request = page.locator("form.request")
    expect(request).to_have_count(1)
    expect(request).to_contain_text("Eero")
    screenshot(page, "members-request", "fi")
    request.get_by_label("Koodi, jonka hänen laitteensa näyttää").fill("AAAA-BBBB-CCCC-DDDD-EEEE")
    request.get_by_role("button", name="Allekirjoita ja lisää").click()
    expect(page.locator("#members-status")).to_contain_text("Koodi ei täsmää")
    assert memberchange.latest(register.reg, h).version == 1  # type: ignore[union-attr]
    request.get_by_label("Koodi, jonka hänen laitteensa näyttää").fill(eero_code.lower().replace("-", " "))
    request.get_by_role("button", name="Allekirjoita ja lisää").click()
    expect(page.locator("table.members tbody tr")).to_have_count(2)
    expect(page.locator("#members-status")).to_contain_text("allekirjoitettu")
    assert "2" in _version(page)

    # The hub verifies the version signed in Aino's browser and from now on encrypts to Eero too.
    assert hub.apply(memberchange.chain(register.reg, h, after=hub.version))["version"] == 2
    assert len(hub.recipients) == 2
    hub_identity = register.enroll(h)
    upload_clip(register, hub_identity, "clip-after-add", make_clip(tmp_path / "c.mp4"), hub.recipients)
    eero.goto(f"{base}/app/clips")
    eero.get_by_role("button", name=re.compile("^Toista")).click()
    eero.wait_for_function(_LOADED)
    assert abs(eero.locator("#clip-player").evaluate("v => v.duration") - CLIP_SECONDS) < 0.25

    eero.goto(f"{base}/app/lang/en?next=/app/members")
    expect(eero.get_by_role("heading", level=1)).to_have_text("Members and keys")
    screenshot(eero, "members", "en")
    assert_accessible(eero)

    # Remove: Aino signs a version without Eero; the hub stops encrypting to him.
    page.reload()
    page.get_by_role("button", name="Poista jäsen: Eero").click()
    expect(page.locator("table.members tbody tr")).to_have_count(1)
    hub.apply(memberchange.chain(register.reg, h, after=hub.version))
    assert hub.recipients == [aino_first_age]

    # Rotate: new keys signed with the old one; the hub takes them; the old clip still opens on Aino's phone.
    page.get_by_role("button", name="Vaihda avaimeni").click()
    expect(page.locator("#members-status")).to_contain_text("vaihdettu")
    assert "4" in _version(page)
    hub.apply(memberchange.chain(register.reg, h, after=hub.version))
    assert hub.version == 4 and len(hub.recipients) == 1 and hub.recipients != [aino_first_age]
    expect(page.locator("#own-code")).not_to_have_text(aino_code)
    page.goto(f"{base}/app/clips")
    page.get_by_role("button", name=re.compile("^Toista")).click()
    page.wait_for_function(_LOADED)
    assert hub.summary()["refused"] == {}
    # Aino on another phone (Eero's, which holds no keys of hers): its new keys are not the listed ones, and the
    # page says so instead of offering to sign with them.
    eero.goto(f"{base}/app/lang/fi?next=/app/members")
    eero.goto(server.signin_link(aino))
    eero.get_by_role("button", name="Luo pääsyavain").click()
    expect(eero).to_have_url(re.compile(r"/app/home$"))
    make_keys(eero, base)
    expect(eero.locator("#own-stale")).to_be_visible()
    expect(page.locator("#own-stale")).to_be_hidden()
    # Those keys deleted from that phone (after its confirmation dialog): the key store no longer has them.
    eero.once("dialog", lambda dialog: dialog.accept())
    eero.get_by_role("button", name="Poista avaimeni tältä laitteelta").click()
    expect(eero.locator("#members-status")).to_contain_text("poistettu")
    expect(eero.get_by_role("button", name="Luo avaimeni tälle laitteelle")).to_be_visible()
    assert eero.evaluate("async (m) => (await import('/app/static/js/keystore.js')).publicKeys(m)", aino) is None
    actions = [a["action"] for a in register.reg.audit_entries(h) if a["actor"] == f"member:{aino}"]
    assert actions.count("member_list.append") == 4 and actions.count("member.invite") == 1


def test_a_register_that_lies_gets_no_signature(webapp_server: WebAppServer, page: Page) -> None:
    """An operator with the database (or the register's TLS key) proposes other bytes than asked for, forges a
    version into the log, then hides one the phone has seen: the browser signs none of it."""
    server, register = webapp_server, webapp_server.register
    h = server.household()
    aino = directory_member(server, h, "Aino")
    sign_in(page, server.signin_link(aino))
    start_member_list(page, server.url)
    mallory = Ed25519PrivateKey.generate()
    intruder = ml.Entry(id="m_operator", age=str(pyrage.x25519.Identity.generate().to_public()),
                        ed25519=ml.public_hex(mallory))  # fmt: skip

    def with_intruder(route: Route) -> None:
        # The proposal for "replace my keys", with the operator's key slipped in (canonical, so only the browser's
        # own expectation can catch it).
        proposal = route.fetch().json()
        body = ml.decode_body(base64.b64decode(proposal["body"]))
        forged = ml.make_body(body.household, body.version, body.prev, [*body.members, intruder])
        route.fulfill(json={**proposal, "body": base64.b64encode(ml.encode_body(forged)).decode()})

    page.route("**/app/members/propose", with_intruder)
    page.get_by_role("button", name="Vaihda avaimeni").click()
    expect(page.locator("#members-status")).to_contain_text("Palvelin ehdotti muuta kuin pyysit")
    page.unroute("**/app/members/propose")
    assert memberchange.latest(register.reg, h).version == 1  # type: ignore[union-attr]

    # An honest rotation whose answer is lost (the register stored it; the page never heard): on the next load
    # the page sees its pending keys in the verified list and makes them current. The phone has seen version 2.
    def lost_answer(route: Route) -> None:
        route.fetch()
        route.abort()

    page.reload()
    page.route("**/app/members/sign", lost_answer)
    page.get_by_role("button", name="Vaihda avaimeni").click()
    expect(page.locator("#members-status")).to_contain_text("Ei onnistunut")
    page.unroute("**/app/members/sign")
    v2 = memberchange.latest(register.reg, h)
    assert v2 is not None and v2.version == 2
    page.reload()
    expect(page.locator("#own-code")).to_have_text(ml.pairing_code(v2.body.members[0].ed25519))

    # A forged version 3 written straight into the database (signed by a key that is not a member's).
    forged = ml.sign(ml.make_body(h, 3, v2.digest, [*v2.body.members, intruder]), intruder.id, mallory)
    with register.reg.engine.begin() as conn:
        conn.execute(
            insert(db.member_log).values(
                household_id=h, version=3, digest=ml.body_digest(ml.open_signed(forged)[1]), prev=v2.digest,
                signed=ml.encode_signed(forged).decode(), created_at=time.time(),
            )
        )  # fmt: skip
    page.reload()
    page.get_by_role("button", name="Vaihda avaimeni").click()
    expect(page.locator("#members-status")).to_contain_text("jota jäsen ei ole allekirjoittanut")
    # The log rolled back to before what the phone saw (version 2 and the forgery deleted).
    with register.reg.engine.begin() as conn:
        conn.execute(delete(db.member_log).where(db.member_log.c.household_id == h, db.member_log.c.version >= 2))
    page.reload()
    page.get_by_role("button", name="Vaihda avaimeni").click()
    expect(page.locator("#members-status")).to_contain_text("eri historian kuin tämä laite on nähnyt")
    assert memberchange.latest(register.reg, h).version == 1  # type: ignore[union-attr]


_VECTORS_JS = """async (v) => {
  const ml = await import('/app/static/js/memberlist.js');
  const keys = await import('/app/static/js/keystore.js');
  const signed = v.versions.map((x) => x.signed);
  const latest = await ml.audit(v.household, signed, null);
  const canonical = v.versions.map((x) => {
    const b = JSON.parse(x.body_utf8);
    return ml.canonical(b.household, b.version, b.prev, [...b.members].reverse()) === x.body_utf8;
  });
  const codes = [];
  for (const x of v.versions) {
    for (const m of JSON.parse(x.body_utf8).members) codes.push(await keys.pairingCode(m.ed25519));
  }
  const refusals = [];
  const tampered = structuredClone(signed);
  tampered[2].sig = tampered[2].sig.slice(0, -1) + (tampered[2].sig.endsWith('0') ? '1' : '0');
  const skipped = [signed[0], signed[2]];
  const other = [signed[0]];
  for (const [chain, household] of [[tampered, v.household], [skipped, v.household], [other, 'hh_other']]) {
    try { await ml.audit(household, chain, null); refusals.push('accepted'); } catch (e) { refusals.push(e.code); }
  }
  return {version: latest.body.version, digest: latest.digest, canonical, codes, refusals};
}"""


def test_the_browsers_member_list_code_agrees_with_the_golden_vectors(webapp_server: WebAppServer, page: Page) -> None:
    """memberlist.js and keystore.js against tests/vectors/memberlist (made by cloud_sync/memberlist.py): the same
    canonical bytes, digests, pairing codes and verdicts."""
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "memberlist" / "vectors.json").read_text())
    page.goto(f"{webapp_server.url}/app/signin")  # any page: it carries the import map
    out = page.evaluate(_VECTORS_JS, vectors)
    assert (out["version"], out["digest"]) == (4, vectors["versions"][-1]["digest"])
    assert out["canonical"] == [True] * 4
    assert set(out["codes"]) == set(vectors["pairing_codes"].values())  # Aino, Eero, Eero after his rotation
    assert out["refusals"] == ["forged", "forged", "forged"]
