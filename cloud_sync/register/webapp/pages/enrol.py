"""Enrolling a device with a one-time link: the link's page shows a button (link previewers fetch links, so the
GET changes nothing); the button registers a passkey for the link's member, which uses the link up and signs the
member in."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cloud_sync.register.errors import RegisterError
from cloud_sync.register.webapp import links, passkeys, session
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts
from cloud_sync.register.webapp.pages.signin import HOME, Attempts, answer, json_from_page
from cloud_sync.register.webapp.render import render, secure


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(prefix="/app/enrol")
    attempts = Attempts(ctx)

    @r.get("/{token}")
    def enrol_page(request: Request, token: str) -> Response:
        key = attempts.check(request)
        try:
            links.peek(ctx.reg, token, now=ctx.clock())
        except RegisterError:
            attempts.failed(key)
            return render(request, None, "enrol.html", status_code=410, title_key="enrol.title", valid=False)
        return render(request, None, "enrol.html", title_key="enrol.title", valid=True, token=token)

    @r.post("/{token}/options")
    async def enrol_options(request: Request, token: str) -> Response:
        await json_from_page(ctx, request)
        key = attempts.check(request)
        try:
            member_id = await run_in_threadpool(links.peek, ctx.reg, token, now=ctx.clock())
        except RegisterError:
            attempts.failed(key)
            raise
        return JSONResponse(await run_in_threadpool(passkeys.registration_options, ctx, member_id))

    @r.post("/{token}/verify")
    async def enrol_verify(request: Request, token: str) -> Response:
        data = await json_from_page(ctx, request)
        key = attempts.check(request)

        def consume(conn: Connection) -> str:
            return links.consume(conn, token, now=ctx.clock())

        try:
            cid, credential = answer(data)
            who = await run_in_threadpool(lambda: passkeys.register(ctx, cid, credential, consume=consume))
        except RegisterError:
            attempts.failed(key)
            raise
        response = JSONResponse({"next": HOME})
        await run_in_threadpool(
            session.start, ctx, response, who.member_id, who.household_id, old=request.cookies.get(session.COOKIE)
        )
        return secure(response)

    return r


register_texts(
    {
        "fi": {
            "enrol.title": "Ota laite käyttöön",
            "enrol.lead": "Luo tälle laitteelle pääsyavain. Sen jälkeen kirjaudut sillä, ilman salasanaa.",
            "enrol.button": "Luo pääsyavain",
            "enrol.working": "Odotetaan pääsyavainta…",
            "enrol.failed": "Pääsyavaimen luominen ei onnistunut.",
            "enrol.invalid": "Linkki on vanhentunut tai jo käytetty. Pyydä uusi linkki.",
        },
        "en": {
            "enrol.title": "Set up this device",
            "enrol.lead": "Create a passkey on this device. From then on you sign in with it, without a password.",
            "enrol.button": "Create a passkey",
            "enrol.working": "Waiting for the passkey…",
            "enrol.failed": "Creating the passkey did not succeed.",
            "enrol.invalid": "This link has expired or was already used. Please ask for a new one.",
        },
    }
)
