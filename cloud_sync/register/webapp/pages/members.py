"""Members: the UI of the signed member list (docs/members.md). Keys are made and lists signed in the member's
browser (static/js/members.js, keystore.js, memberlist.js); this module proposes exact bytes and verifies what
comes back (:mod:`cloud_sync.register.webapp.memberchange`).

Routes under ``/app/members`` (JSON ones for the page's script; every change needs the session's CSRF token):
``GET log`` the whole signed log for the browser's own audit; ``POST keys`` this member's public keys;
``POST propose`` the next version's canonical body; ``POST sign`` append a signed version; ``POST
requests/{id}/decline``; ``POST invite`` (a form) a new member and their one-time enrolment link.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

import msgspec
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register.errors import Invalid, TooLarge
from cloud_sync.register.webapp import links
from cloud_sync.register.webapp import memberchange as mc
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts, t
from cloud_sync.register.webapp.render import register_nav, render
from cloud_sync.register.webapp.session import Checked, Member, MemberSession

BASE: Final = "/app/members"
MAX_BODY: Final = 32 * 1024
"""A signed version is at most about 7 KB of body, in base64 with its signature: far below this."""

T = TypeVar("T")

register_texts(
    {
        "fi": {
            "nav.members": "Jäsenet",
            "members.title": "Jäsenet ja avaimet",
            "members.intro": "Kotisi jäsenluettelo päättää, kenen avaimille kameratallenteet salataan. Vain jäsen voi "
            "muuttaa sitä: muutos allekirjoitetaan jäsenen omalla laitteella, ja keskitin tarkistaa allekirjoituksen.",
            "members.own": "Avaimesi tällä laitteella",
            "members.own_none": "Tällä laitteella ei ole avaimiasi. Avaimet luodaan tässä selaimessa, eivätkä ne "
            "koskaan lähde laitteelta.",
            "members.create": "Luo avaimeni tälle laitteelle",
            "members.own_code": "Laitteesi tunnistekoodi:",
            "members.own_stale": "Jäsenluettelossa on sinulle eri avaimet kuin tällä laitteella (uusi laite tai "
            "tyhjennetty selain). Tämä laite ei voi allekirjoittaa eikä avata tallenteita. Pyydä toista jäsentä "
            "poistamaan sinut ja lisäämään uudelleen tämän laitteen avaimilla.",
            "members.start_intro": "Kodillasi ei ole vielä jäsenluetteloa. Aloita se: luettelossa olet "
            "ensin vain sinä.",
            "members.start": "Aloita jäsenluettelo",
            "members.rotate_intro": "Vaihda avaimet, jos epäilet niiden joutuneen vääriin käsiin. Vanhat avaimet "
            "jäävät tälle laitteelle, jotta aiemmat tallenteet aukeavat.",
            "members.rotate": "Vaihda avaimeni",
            "members.waiting": "Avaimesi odottavat, että joku jäsen lisää sinut. Näytä hänelle yllä oleva koodi.",
            "members.send_again": "Lähetä julkiset avaimeni uudelleen",
            "members.forget_intro": "Luovutatko laitteen pois? Poista avaimesi siitä ensin.",
            "members.forget": "Poista avaimeni tältä laitteelta",
            "members.js.forget_confirm": "Poistetaanko avaimesi tältä laitteelta? Tällä laitteella ei sen jälkeen voi "
            "avata tallenteita eikä allekirjoittaa muutoksia.",
            "members.js.forgotten": "Avaimesi on poistettu tältä laitteelta.",
            "members.js.kept": "Avaimia ei poistettu.",
            "members.list": "Jäsenluettelo",
            "members.list_caption": "Jäsenluettelon versio {version}",
            "members.name": "Jäsen",
            "members.code": "Tunnistekoodi",
            "members.action": "Toiminto",
            "members.you": "sinä",
            "members.remove": "Poista jäsen",
            "members.requests": "Lisättäviksi pyydetyt",
            "members.requests_intro": "Lisää jäsen vain, jos hänen laitteensa näyttää saman koodin, jonka kirjoitat.",
            "members.requested_by": "Pyytäjä",
            "members.code_from_device": "Koodi, jonka hänen laitteensa näyttää",
            "members.add": "Allekirjoita ja lisää",
            "members.decline": "Hylkää",
            "members.invite": "Kutsu jäsen",
            "members.invite_name": "Nimi",
            "members.invite_button": "Luo kutsulinkki",
            "members.invite_link": "Kertakäyttöinen kutsulinkki (anna se vain kutsuttavalle):",
            "members.by_member": "jäsen itse",
            "members.by_operator": "palveluntarjoaja",
            "members.js.working": "Hetki…",
            "members.js.created": "Avaimesi on luotu tälle laitteelle.",
            "members.js.signed": "Jäsenluettelon uusi versio on allekirjoitettu ja tallennettu.",
            "members.js.rotated": "Avaimesi on vaihdettu.",
            "members.js.declined": "Pyyntö on hylätty.",
            "members.js.requested": "Julkiset avaimesi odottavat jäsenen allekirjoitusta.",
            "members.js.codemismatch": "Koodi ei täsmää. Älä lisää jäsentä: avaimet eivät ehkä ole hänen.",
            "members.js.failed": "Ei onnistunut:",
            "members.js.tampered": "Palvelin ehdotti muuta kuin pyysit. Mitään ei allekirjoitettu. Ilmoita tästä "
            "palveluntarjoajalle.",
            "members.js.forged": "Palvelimen jäsenluettelossa on versio, jota jäsen ei ole allekirjoittanut. Mitään "
            "ei allekirjoitettu.",
            "members.js.notlisted": "Tämän laitteen allekirjoitusavain ei ole jäsenluettelossa. Mitään ei "
            "allekirjoitettu.",
            "members.js.member_list_stale": "Toinen jäsen muutti luetteloa samaan aikaan. Lataa sivu ja yritä "
            "uudelleen.",
            "members.js.rolledback": "Palvelin näyttää jäsenluettelosta eri historian kuin tämä laite on nähnyt. "
            "Mitään ei allekirjoitettu.",
        },
        "en": {
            "nav.members": "Members",
            "members.title": "Members and keys",
            "members.intro": "Your household's member list decides whose keys camera clips are encrypted to. Only a "
            "member can change it: a change is signed on the member's own device, and the hub checks the signature.",
            "members.own": "Your keys on this device",
            "members.own_none": "This device holds none of your keys. Keys are made in this browser and never leave "
            "the device.",
            "members.create": "Create my keys on this device",
            "members.own_code": "Your device's pairing code:",
            "members.own_stale": "The member list names other keys for you than this device holds (a new device, "
            "or a cleared browser). This device can neither sign nor open clips. Ask another member to remove you "
            "and add you again with this device's keys.",
            "members.start_intro": "Your household has no member list yet. Start it: at first it lists only you.",
            "members.start": "Start the member list",
            "members.rotate_intro": "Replace your keys if you suspect they were exposed. The old keys stay on this "
            "device so that earlier clips still open.",
            "members.rotate": "Replace my keys",
            "members.waiting": "Your keys are waiting for a member to add you. Show them the code above.",
            "members.send_again": "Send my public keys again",
            "members.forget_intro": "Giving this device away? Delete your keys from it first.",
            "members.forget": "Delete my keys from this device",
            "members.js.forget_confirm": "Delete your keys from this device? It can then neither open clips nor sign "
            "changes.",
            "members.js.forgotten": "Your keys were deleted from this device.",
            "members.js.kept": "The keys were not deleted.",
            "members.list": "Member list",
            "members.list_caption": "Member list, version {version}",
            "members.name": "Member",
            "members.code": "Pairing code",
            "members.action": "Action",
            "members.you": "you",
            "members.remove": "Remove member",
            "members.requests": "Waiting to be added",
            "members.requests_intro": "Add a member only if their device shows the same code you type.",
            "members.requested_by": "Asked by",
            "members.code_from_device": "The code their device shows",
            "members.add": "Sign and add",
            "members.decline": "Decline",
            "members.invite": "Invite a member",
            "members.invite_name": "Name",
            "members.invite_button": "Make an invitation link",
            "members.invite_link": "One-time invitation link (give it only to the person invited):",
            "members.by_member": "the member themselves",
            "members.by_operator": "the service provider",
            "members.js.working": "One moment…",
            "members.js.created": "Your keys were created on this device.",
            "members.js.signed": "A new version of the member list was signed and stored.",
            "members.js.rotated": "Your keys were replaced.",
            "members.js.declined": "The request was declined.",
            "members.js.requested": "Your public keys are waiting for a member's signature.",
            "members.js.codemismatch": "The code does not match. Do not add this member: the keys may not be theirs.",
            "members.js.failed": "Did not succeed:",
            "members.js.tampered": "The server proposed something other than you asked for. Nothing was signed. "
            "Please report this to the service provider.",
            "members.js.forged": "The server's member list holds a version no member signed. Nothing was signed.",
            "members.js.notlisted": "This device's signing key is not in the member list. Nothing was signed.",
            "members.js.member_list_stale": "Another member changed the list at the same time. Reload the page and "
            "try again.",
            "members.js.rolledback": "The server shows another history of the member list than this device has "
            "seen. Nothing was signed.",
        },
    }
)

register_nav(BASE, "nav.members", 45)

_JS_TEXTS: Final = (
    "working",
    "created",
    "signed",
    "rotated",
    "declined",
    "requested",
    "codemismatch",
    "failed",
    "tampered",
    "forged",
    "rolledback",
    "notlisted",
    "member_list_stale",
    "forget_confirm",
    "forgotten",
    "kept",
)


async def _decode(request: Request, typ: type[T]) -> T:
    """A JSON body of at most :data:`MAX_BODY` bytes as ``typ``: 413, 400 ``bad_json`` or 422 naming the field."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise TooLarge(f"body exceeds the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return msgspec.json.decode(b"".join(chunks), type=typ)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid body: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}", status=400, code="bad_json") from exc


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    def page(request: Request, session: MemberSession, invite_link: str = "") -> HTMLResponse:
        h, me = session.household_id, session.member_id
        version, members = mc.members(ctx.reg, h)
        names = mc.names(ctx.reg, h)
        requests = [
            {
                "id": q.id,
                "member_id": q.member_id,
                "name": names.get(q.member_id, ""),
                "recipient": q.recipient,
                "ed25519": q.ed25519,
                "by": t("members.by_member" if q.requested_by.startswith("member:") else "members.by_operator",
                        session.lang),
            }
            for q in mc.requests(ctx.reg, h)
        ]  # fmt: skip
        return render(
            request,
            session,
            "members.html",
            title_key="members.title",
            member_id=me,
            household_id=h,
            version=version,
            members=members,
            listed=any(m.id == me for m in members),
            listed_key=next((m.ed25519 for m in members if m.id == me), ""),
            requests=requests,
            invite_link=invite_link,
            js_texts={k: t(f"members.js.{k}", session.lang) for k in _JS_TEXTS},
            base=BASE,
        )

    @r.get(BASE, response_class=HTMLResponse)
    async def members_page(request: Request, session: Member) -> HTMLResponse:
        return await run_in_threadpool(page, request, session)

    @r.get(BASE + "/log")
    async def member_log(session: Member) -> Response:
        return _json(await run_in_threadpool(mc.chain, ctx.reg, session.household_id))

    @r.post(BASE + "/keys", status_code=201)
    async def post_keys(request: Request, session: Checked) -> Response:
        keys = await _decode(request, mc.KeysPosted)
        rec = await run_in_threadpool(mc.post_keys, ctx.reg, session.household_id, session.member_id, keys)
        return _json({"request": rec.id}, 201)

    @r.post(BASE + "/propose")
    async def propose(request: Request, session: Checked) -> Response:
        change = await _decode(request, mc.ChangeRequest)
        return _json(await run_in_threadpool(mc.propose, ctx.reg, session.household_id, session.member_id, change))

    @r.post(BASE + "/sign", status_code=201)
    async def sign(request: Request, session: Checked) -> Response:
        signed = await _decode(request, p.SignedMemberList)
        entry = await run_in_threadpool(mc.submit, ctx.reg, session.household_id, session.member_id, signed)
        return _json({"version": entry.version, "digest": entry.digest}, 201)

    @r.post(BASE + "/requests/{request_id}/decline", status_code=204)
    async def decline(request_id: str, session: Checked) -> Response:
        await run_in_threadpool(lambda: mc.decline(ctx.reg, session.household_id, request_id, by=session.member_id))
        return Response(status_code=204)

    @r.post(BASE + "/invite", response_class=HTMLResponse)
    async def invite(request: Request, session: Checked, name: Annotated[str, Form(max_length=128)]) -> HTMLResponse:
        link = await run_in_threadpool(invite_member, ctx, session, name.strip())
        return await run_in_threadpool(page, request, session, link)

    return r


def invite_member(ctx: WebContext, session: MemberSession, name: str) -> str:
    """A new directory member and their one-time enrolment link, shown to the inviting member to pass on."""
    member_id = mc.invite(ctx.reg, session.household_id, name, by=session.member_id, now=ctx.clock())
    token = links.create(ctx.reg, member_id, actor=session.actor, now=ctx.clock())
    return links.url(ctx.origin, token)
