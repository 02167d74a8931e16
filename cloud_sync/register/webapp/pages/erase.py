"""Poista tietoni (erase my data): a confirmation that says what will be destroyed, the erasure itself (the
register's, then each hub's by the existing ``erase`` command), its progress, and the signed receipts, verified
here with ``cloud_sync.receipts`` and downloadable so the member can verify them without us.

Erasing removes the household's members, and with them the sign-in of the member who asked; so the page that
follows the erasure is reached by a signed link naming this one erasure (``mydata.ProgressTokens``), not by the
session. What it shows is the receipts: counts and ids, no personal data.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cloud_sync.register import mydata, restrictions
from cloud_sync.register.errors import NotFound
from cloud_sync.register.webapp import session as sessions
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import pick_lang, register_texts
from cloud_sync.register.webapp.render import register_nav, render, secure
from cloud_sync.register.webapp.session import Checked, Member

register_nav("/app/erase", "nav.erase", 70)
register_texts(
    {
        "fi": {
            "nav.erase": "Poista tietoni",
            "erase.title": "Poista tietoni",
            "erase.intro": "Tämä poistaa pysyvästi kaikki kotitaloutesi tiedot rekisteristä ja keskittimiltäsi. "
            "Poistoa ei voi perua. Keskittimet ja laitteet jäävät toimimaan.",
            "erase.will": "Poistetaan",
            "erase.also": "Lisäksi poistuvat jäsenten tiedot ja kirjautumiset: jäsenet kutsutaan uudelleen "
            "poiston jälkeen. Muutoshistoria jää merkiksi poistosta, ilman poistettujen tietojen nimiä.",
            "erase.confirm": "Ymmärrän, että tiedot poistetaan pysyvästi",
            "erase.button": "Poista kaikki tietoni",
            "erase.need_confirm": "Vahvista poisto rastittamalla ruutu.",
            "erase.done.title": "Tiedot poistettu",
            "erase.done.register": "Rekisteri poisti tietosi ja allekirjoitti kuitin.",
            "erase.done.receipt": "Kuitin tunnus",
            "erase.done.verified": "Allekirjoitus tarkistettu: allekirjoittaja on rekisteri.",
            "erase.done.counts": "Rekisteristä poistettu",
            "erase.hubs": "Keskittimet",
            "erase.hub": "Keskitin",
            "erase.state": "Tila",
            "erase.state.pending": "odottaa keskitintä",
            "erase.state.delivered": "keskitin poistaa",
            "erase.state.done": "poistettu, kuitti tarkistettu",
            "erase.state.failed": "ei onnistunut",
            "erase.state.bad": "kuitti ei täsmää",
            "erase.nohubs": "Kotitaloudellasi ei ole keskittimiä.",
            "erase.progress.wait": "Odotetaan keskittimiä…",
            "erase.progress.done": "Kaikki keskittimet ovat vastanneet.",
            "erase.verify.title": "Tarkista kuitti itse",
            "erase.verify.intro": "Kuitti on allekirjoitettu rekisterin varmenteella. Voit tarkistaa sen ilman "
            "meitä: lataa tiedostot ja aja jokin alla olevista komennoista.",
            "erase.verify.files": "Tiedostot",
            "erase.verify.receipt": "Kuitti (JSON)",
            "erase.verify.ca": "Rekisterin varmenne",
            "erase.verify.body": "Allekirjoitettu sisältö",
            "erase.verify.sig": "Allekirjoitus",
            "erase.verify.hub": "Keskittimen kuitti",
            "erase.verify.kotihub": "Keskittimen komentorivillä:",
            "erase.verify.openssl": "Pelkällä OpenSSL:llä (allekirjoitettu sisältö on kuitin receipt-kenttä "
            "kanonisena JSONina):",
            "erase.verify.ok": "Kummassakin tapauksessa onnistunut tarkistus tulostaa sanan OK tai valid.",
        },
        "en": {
            "nav.erase": "Erase my data",
            "erase.title": "Erase my data",
            "erase.intro": "This permanently erases all of your household's data from the register and from your "
            "hubs. It cannot be undone. The hubs and devices keep working.",
            "erase.will": "To be erased",
            "erase.also": "The members' details and sign-ins go too: members are invited again after the erasure. "
            "The history of changes stays as the record of the erasure, without the names of what was erased.",
            "erase.confirm": "I understand that the data is erased permanently",
            "erase.button": "Erase all my data",
            "erase.need_confirm": "Confirm the erasure by ticking the box.",
            "erase.done.title": "Data erased",
            "erase.done.register": "The register erased your data and signed a receipt.",
            "erase.done.receipt": "Receipt id",
            "erase.done.verified": "Signature checked: the signer is the register.",
            "erase.done.counts": "Erased from the register",
            "erase.hubs": "Hubs",
            "erase.hub": "Hub",
            "erase.state": "State",
            "erase.state.pending": "waiting for the hub",
            "erase.state.delivered": "the hub is erasing",
            "erase.state.done": "erased, receipt checked",
            "erase.state.failed": "did not succeed",
            "erase.state.bad": "the receipt does not verify",
            "erase.nohubs": "Your household has no hubs.",
            "erase.progress.wait": "Waiting for the hubs…",
            "erase.progress.done": "Every hub has answered.",
            "erase.verify.title": "Verify the receipt yourself",
            "erase.verify.intro": "The receipt is signed with the register's certificate. You can check it without "
            "us: download the files and run one of the commands below.",
            "erase.verify.files": "Files",
            "erase.verify.receipt": "Receipt (JSON)",
            "erase.verify.ca": "The register's certificate",
            "erase.verify.body": "The signed content",
            "erase.verify.sig": "The signature",
            "erase.verify.hub": "The hub's receipt",
            "erase.verify.kotihub": "On the hub's command line:",
            "erase.verify.openssl": "With OpenSSL alone (the signed content is the receipt's receipt field as "
            "canonical JSON):",
            "erase.verify.ok": "Either way a successful check prints OK or valid.",
        },
    }
)

_JSON = "application/json"


def _state(hub: dict[str, Any]) -> str:
    if hub["state"] == "done" and not hub.get("verified", False):
        return "bad"
    return str(hub["state"])


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    tokens = mydata.ProgressTokens(ctx.reg)

    def confirm_view(household_id: str) -> list[tuple[str, int | None]]:
        hidden = restrictions.restricted(ctx.reg, household_id)
        counts = mydata.held(ctx.reg, household_id)
        return [(n, None if mydata.CATEGORY_OF.get(n, "") in hidden else counts[n]) for n, _ in mydata.HELD]

    @r.get("/app/erase", response_class=HTMLResponse)
    async def confirm(request: Request, session: Member) -> HTMLResponse:
        rows = await run_in_threadpool(confirm_view, session.household_id)
        return render(request, session, "erase.html", title_key="erase.title", rows=rows, missing=False)

    @r.post("/app/erase", response_model=None)
    async def erase(request: Request, session: Checked) -> Response:
        form = await request.form()
        if form.get("confirm") != "yes":
            rows = await run_in_threadpool(confirm_view, session.household_id)
            return render(
                request, session, "erase.html", title_key="erase.title", rows=rows, missing=True, status_code=422
            )
        done = await run_in_threadpool(lambda: mydata.erase(ctx.reg, session.household_id, actor=session.actor))
        token = tokens.make(session.household_id, str(done.receipt["receipt"]["receipt_id"]))
        return secure(RedirectResponse(f"/app/erase/done/{token}", status_code=303))

    def progress(token: str) -> dict[str, Any]:
        household_id, receipt_id = tokens.read(token)
        return mydata.erasure_progress(ctx.reg, household_id, receipt_id)

    @r.get("/app/erase/done/{token}", response_class=HTMLResponse)
    async def done(request: Request, token: str) -> HTMLResponse:
        p = await run_in_threadpool(progress, token)
        # Usually signed out by now (the erasure removed the members); the page needs no session.
        token_cookie = request.cookies.get(sessions.COOKIE)
        session = await run_in_threadpool(sessions.lookup, ctx, token_cookie, pick_lang(request))
        return render(
            request,
            session,
            "erase_done.html",
            title_key="erase.done.title",
            token=token,
            p=p,
            erased=p["register"]["receipt"]["receipt"].get("erased", {}),
            hubs=[(h["hub_id"], _state(h)) for h in p["hubs"]],
        )

    @r.get("/app/erase/done/{token}/status")
    async def status(token: str) -> Response:
        p = await run_in_threadpool(progress, token)
        body = {"done": p["done"], "hubs": [{"hub_id": h["hub_id"], "state": _state(h)} for h in p["hubs"]]}
        return secure(Response(msgspec.json.encode(body), media_type=_JSON))

    def _download(data: bytes, name: str, media: str) -> Response:
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return secure(Response(data, media_type=media, headers=headers))

    @r.get("/app/erase/done/{token}/file/{name}")
    async def file(token: str, name: str) -> Response:
        p = await run_in_threadpool(progress, token)
        signed = p["register"]["receipt"]
        if name == "receipt.json":
            return _download(msgspec.json.encode(signed), name, _JSON)
        if name == "register-ca.crt":
            return _download(ctx.reg.ca.cert_pem, name, "application/x-pem-file")
        parts = mydata.openssl_parts(signed)
        if name == "receipt-body.json":
            return _download(parts["body"], name, _JSON)
        if name == "receipt.sig":
            return _download(parts["signature"], name, "application/octet-stream")
        for hub in p["hubs"]:
            if name == f"hub-{hub['hub_id']}.json" and "receipt" in hub:
                return _download(msgspec.json.encode(hub["receipt"]), name, _JSON)
        raise NotFound("no such file for this erasure", code="no_file")

    return r
