"""Alarms: the household's recent alarms, and acknowledging one, which stops its escalation through the notify
package's own acknowledgement (audited as the member, channel ``app``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cloud_sync.register.notify import alarms as notify_alarms
from cloud_sync.register.notify import dispatch
from cloud_sync.register.notify import texts as alarm_texts
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts
from cloud_sync.register.webapp.pages.home import when
from cloud_sync.register.webapp.render import register_nav, render, secure
from cloud_sync.register.webapp.session import Checked, Member

HISTORY: int = 50


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(prefix="/app/alarms")

    @r.get("")
    async def alarms_page(request: Request, session: Member) -> Response:
        def load() -> list[dict[str, Any]]:
            with ctx.reg.engine.connect() as conn:
                return notify_alarms.history(conn, session.household_id, limit=HISTORY)

        rows = await run_in_threadpool(load)
        lang, now = session.lang, ctx.clock()
        return render(
            request,
            session,
            "alarms.html",
            title_key="alarms.title",
            alarms=rows,
            when=lambda ts: when(ts, lang, now),
            headline=lambda a: alarm_texts.headline(a["category"], a["place"], lang, late=a["late"]),
        )

    @r.post("/{alarm_id}/ack")
    async def ack(request: Request, alarm_id: str, session: Checked) -> Response:
        def run() -> None:
            # Scoped by the session's household: an alarm id of another household is "no such alarm" (404).
            with dispatch.urgent_transaction(ctx.reg) as conn:
                notify_alarms.acknowledge(conn, session.household_id, alarm_id, actor=session.actor, channel="app")
            notify_alarms.notify_dispatchers(ctx.reg.engine)

        await run_in_threadpool(run)
        form = await request.form()
        nxt = form.get("next")
        target = nxt if isinstance(nxt, str) and nxt in ("/app/home", "/app/alarms") else "/app/home"
        return secure(RedirectResponse(target, status_code=303))

    return r


register_nav("/app/alarms", "nav.alarms", 20)
register_texts(
    {
        "fi": {
            "alarms.title": "Hälytykset",
            "alarms.ack": "Kuittaa",
            "alarms.none": "Ei hälytyksiä.",
            "alarms.acked": "Kuitattu",
            "alarms.open": "Avoin",
            "alarms.cleared": "Päättynyt",
            "alarms.sent": "Viestejä lähetetty",
            "alarms.raised": "Alkoi",
        },
        "en": {
            "alarms.title": "Alarms",
            "alarms.ack": "Acknowledge",
            "alarms.none": "No alarms.",
            "alarms.acked": "Acknowledged",
            "alarms.open": "Open",
            "alarms.cleared": "Ended",
            "alarms.sent": "Messages sent",
            "alarms.raised": "Started",
        },
    }
)
