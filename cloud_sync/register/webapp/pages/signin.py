"""Signing in and out: the sign-in page (a passkey), its WebAuthn endpoints, sign-out, the language switch and the
web app manifest. The pre-sign-in endpoints take JSON from our own page only (Origin checked) and are rate-limited
per source address like the register's other authentication."""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from cloud_sync.register.errors import Forbidden, Invalid, RegisterError
from cloud_sync.register.ratelimit import Rate
from cloud_sync.register.webapp import passkeys, session
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import LANGS, pick_lang, register_texts, t
from cloud_sync.register.webapp.render import render, secure
from cloud_sync.register.webapp.session import Checked

MAX_JSON: Final = 64 * 1024
HOME: Final = "/app/home"


def source(request: Request) -> str:
    return request.client.host if request.client else ""


async def json_from_page(ctx: WebContext, request: Request) -> dict[str, Any]:
    """The JSON body of a request our own page made: same origin (the Origin header browsers send on every
    POST), JSON content type (a cross-site form cannot send it without a CORS preflight we never answer)."""
    if request.headers.get("origin", "") != ctx.origin:
        raise Forbidden("requests must come from the app's own pages", code="bad_origin")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Invalid("expected application/json")
    body = await request.body()
    if len(body) > MAX_JSON:
        raise Invalid("request too large")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Invalid("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise Invalid("expected a JSON object")
    return data


def answer(data: dict[str, Any]) -> tuple[str, str]:
    """``(ceremony id, credential JSON)`` from a page's ``{"ceremony": ..., "credential": {...}}``."""
    cid, credential = data.get("ceremony"), data.get("credential")
    if not isinstance(cid, str) or not isinstance(credential, dict):
        raise Invalid("expected {ceremony, credential}")
    return cid, json.dumps(credential)


class Attempts:
    """Sign-in attempts per source address: a failure spends one, as the register's token authentication does."""

    def __init__(self, ctx: WebContext) -> None:
        burst = ctx.settings.auth_failure_burst
        self.ctx, self.rate = ctx, Rate(burst, burst / 600)

    def check(self, request: Request) -> tuple[str, str]:
        key = ("app-src", source(request))
        self.ctx.limiter.check(key, self.rate, "failed sign-ins from this address")
        return key

    def failed(self, key: tuple[str, str]) -> None:
        self.ctx.limiter.spend(key, self.rate)


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(prefix="/app")
    attempts = Attempts(ctx)

    @r.get("/signin")
    def signin_page(request: Request) -> Response:
        found = session.lookup(ctx, request.cookies.get(session.COOKIE), "fi")
        if found is not None:
            return RedirectResponse(HOME, status_code=303)
        return render(request, None, "signin.html", title_key="signin.title")

    @r.get("")
    @r.get("/")
    def root() -> Response:
        return RedirectResponse(HOME, status_code=303)

    @r.post("/signin/options")
    async def signin_options(request: Request) -> Response:
        await json_from_page(ctx, request)
        attempts.check(request)
        return JSONResponse(await run_in_threadpool(passkeys.authentication_options, ctx))

    @r.post("/signin/verify")
    async def signin_verify(request: Request) -> Response:
        data = await json_from_page(ctx, request)
        key = attempts.check(request)
        try:
            cid, credential = answer(data)
            who = await run_in_threadpool(passkeys.authenticate, ctx, cid, credential)
        except RegisterError:
            attempts.failed(key)
            raise
        response = JSONResponse({"next": HOME})
        await run_in_threadpool(
            session.start, ctx, response, who.member_id, who.household_id, old=request.cookies.get(session.COOKIE)
        )
        return secure(response)

    @r.post("/signout")
    async def signout(request: Request, _: Checked) -> Response:
        response = RedirectResponse("/app/signin?bye=1", status_code=303)
        await run_in_threadpool(session.end, ctx, request, response)
        return secure(response)

    @r.get("/lang/{lang}")
    def set_lang(lang: str, next: str = HOME) -> Response:
        if lang not in LANGS:
            raise HTTPException(404, "unknown language")
        # Only back into the app: never an open redirect.
        target = next if next.startswith("/app/") and not next.startswith("/app//") else HOME
        response = RedirectResponse(target, status_code=303)
        response.set_cookie("lang", lang, max_age=365 * 86400, path="/app", secure=True, samesite="strict")
        return response

    @r.get("/manifest.webmanifest")
    def manifest(request: Request) -> Response:
        lang = pick_lang(request)
        body = {
            "name": t("app.name", lang),
            "short_name": t("app.name", lang),
            "lang": lang,
            "start_url": HOME,
            "scope": "/app/",
            "display": "standalone",
            "background_color": "#ffffff",
            "theme_color": "#0b5cad",
            "icons": [{"src": "/app/static/icon.svg", "sizes": "any", "type": "image/svg+xml"}],
        }
        return JSONResponse(body, media_type="application/manifest+json")

    return r


register_texts(
    {
        "fi": {
            "signin.title": "Kirjaudu",
            "signin.lead": "Kirjaudu sisään pääsyavaimella, jonka loit tällä laitteella.",
            "signin.button": "Kirjaudu pääsyavaimella",
            "signin.working": "Odotetaan pääsyavainta…",
            "signin.failed": "Kirjautuminen ei onnistunut. Yritä uudelleen.",
            "signin.unsupported": "Tämä selain ei tue pääsyavaimia.",
            "signin.bye": "Olet kirjautunut ulos.",
            "signin.newdevice": "Uusi laite? Pyydä kotitaloutesi jäseneltä tai asentajalta kertakäyttöinen linkki.",
        },
        "en": {
            "signin.title": "Sign in",
            "signin.lead": "Sign in with the passkey you created on this device.",
            "signin.button": "Sign in with a passkey",
            "signin.working": "Waiting for the passkey…",
            "signin.failed": "Signing in did not succeed. Please try again.",
            "signin.unsupported": "This browser does not support passkeys.",
            "signin.bye": "You have signed out.",
            "signin.newdevice": "A new device? Ask a member of your household or the installer for a one-time link.",
        },
    }
)
