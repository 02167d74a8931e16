"""Näytä tietoni (show my data): what the register holds of the household, in plain words and in counts, the
download of all of it (``cloud_sync.register.export``, the same stream as the API's export), and asking the hubs
for their copy (an ``export`` command): the hub uploads its archive sealed to the members (:mod:`..hubexports`),
``GET /app/data/hub-export/{id}/age`` serves that ciphertext (audited), and static/js/hubexport.js decrypts it in
the member's browser with keystore.js and saves it."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from cloud_sync.register import export, hubexports, mydata, restrictions
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts, t
from cloud_sync.register.webapp.notice import NOTICE
from cloud_sync.register.webapp.render import register_nav, render, secure
from cloud_sync.register.webapp.session import Checked, Member

register_nav("/app/data", "nav.data", 40)
register_texts(
    {
        "fi": {
            "nav.data": "Näytä tietoni",
            "data.title": "Näytä tietoni",
            "data.held": "Mitä rekisterissä on nyt kotitaloudestasi",
            "data.kind": "Tieto",
            "data.count": "Määrä",
            "data.restricted": "rajoitettu",
            "data.kind.readings": "Anturien mittaukset",
            "data.kind.events": "Tapahtumat",
            "data.kind.clips": "Kameratallenteet (salattuja)",
            "data.kind.clip_records": "Tallenteiden tiedot",
            "data.kind.diagnostics": "Diagnostiikka",
            "data.kind.devices": "Laitteet",
            "data.kind.members": "Jäsenet",
            "data.kind.contacts": "Yhteystiedot",
            "data.kind.alarms": "Hälytykset",
            "data.kind.notifications": "Lähetetyt ilmoitukset",
            "data.kind.commands": "Komennot keskittimille",
            "data.download": "Lataa kaikki tietosi",
            "data.download.help": "Yksi tiedosto (JSON-rivit), jossa on kaikki rekisterin tiedot kotitaloudestasi. "
            "Videoiden sisältö ladataan erikseen Tallenteet-sivulla, ja vain jäsenten avaimet avaavat sen.",
            "data.hub": "Keskittimen kopio",
            "data.hub.help": "Keskittimesi pitää omaa kopiotaan kotona. Pyydä sitä täältä: keskitin salaa kopion "
            "kotitaloutesi jäsenten avaimille ja lähettää sen tänne. Palvelu säilyttää vain salattua kopiota 7 päivää "
            "eikä pysty avaamaan sitä; avaat sen tällä laitteella omalla avaimellasi.",
            "data.hub.ask": "Pyydä keskittimen kopiota",
            "data.hub.none": "Et ole vielä pyytänyt keskittimen kopiota.",
            "data.hub.hub": "Keskitin",
            "data.hub.asked": "Pyydetty",
            "data.hub.state": "Tila",
            "data.state.asked": "odottaa keskitintä",
            "data.state.ready": "valmis ladattavaksi",
            "data.state.expired": "vanhentunut (poistettu 7 päivän jälkeen)",
            "data.hub.expires": "Poistetaan",
            "data.hub.download": "Lataa ja avaa",
            "data.js.nokeys": "Tällä laitteella ei ole avaintasi: avaa kopio laitteella, jolla liityit.",
            "data.js.loading": "Ladataan ja avataan…",
            "data.js.fetchfailed": "Lataus ei onnistunut.",
            "data.js.decryptfailed": "Avaintesi ei avaa tätä kopiota.",
            "data.js.saved": "Kopio avattu ja tallennettu.",
            "data.state.failed": "ei onnistunut",
            "data.hub.asked_now": "Pyyntö lähetetty keskittimille.",
        },
        "en": {
            "nav.data": "Show my data",
            "data.title": "Show my data",
            "data.held": "What the register holds about your household now",
            "data.kind": "Data",
            "data.count": "Amount",
            "data.restricted": "restricted",
            "data.kind.readings": "Sensor readings",
            "data.kind.events": "Events",
            "data.kind.clips": "Camera clips (encrypted)",
            "data.kind.clip_records": "Clip details",
            "data.kind.diagnostics": "Diagnostics",
            "data.kind.devices": "Devices",
            "data.kind.members": "Members",
            "data.kind.contacts": "Contact details",
            "data.kind.alarms": "Alarms",
            "data.kind.notifications": "Notifications sent",
            "data.kind.commands": "Commands to hubs",
            "data.download": "Download all your data",
            "data.download.help": "One file (JSON lines) with everything the register holds about your household. "
            "The content of videos is downloaded separately on the Clips page, and only members' keys open it.",
            "data.hub": "The hub's copy",
            "data.hub.help": "Your hub keeps its own copy at home. Ask for it here: the hub encrypts the copy to "
            "your household members' keys and sends it here. The service keeps only the encrypted copy, for 7 days, "
            "and cannot open it; you open it on this device with your own key.",
            "data.hub.ask": "Ask the hub for its copy",
            "data.hub.none": "You have not asked for the hub's copy yet.",
            "data.hub.hub": "Hub",
            "data.hub.asked": "Asked",
            "data.hub.state": "State",
            "data.state.asked": "waiting for the hub",
            "data.state.ready": "ready to download",
            "data.state.expired": "expired (deleted after 7 days)",
            "data.hub.expires": "Deleted on",
            "data.hub.download": "Download and open",
            "data.js.nokeys": "This device does not hold your key: open the copy on the device you joined with.",
            "data.js.loading": "Downloading and opening…",
            "data.js.fetchfailed": "The download did not succeed.",
            "data.js.decryptfailed": "Your keys do not open this copy.",
            "data.js.saved": "The copy was opened and saved.",
            "data.state.failed": "did not succeed",
            "data.hub.asked_now": "The request was sent to the hubs.",
        },
    }
)


_JS_TEXTS = ("nokeys", "loading", "fetchfailed", "decryptfailed", "saved")


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    def view(household_id: str) -> dict[str, Any]:
        hidden = restrictions.restricted(ctx.reg, household_id)
        counts = mydata.held(ctx.reg, household_id)
        rows = [(name, None if mydata.CATEGORY_OF.get(name, "") in hidden else counts[name]) for name, _ in mydata.HELD]
        return {"rows": rows, "exports": hubexports.listing(ctx.reg, household_id, now=ctx.clock())}

    @r.get("/app/data", response_class=HTMLResponse)
    async def data(request: Request, session: Member) -> HTMLResponse:
        values = await run_in_threadpool(view, session.household_id)
        lang = session.lang if session.lang in NOTICE else "fi"
        return render(
            request,
            session,
            "data.html",
            title_key="data.title",
            notice=NOTICE[lang],
            asked=request.query_params.get("asked") == "1",
            member_id=session.member_id,
            js_texts={k: t(f"data.js.{k}", session.lang) for k in _JS_TEXTS},
            fmt_time=lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "",
            **values,
        )

    @r.get("/app/data/export")
    async def download(session: Member) -> Response:
        records = await run_in_threadpool(export.export_household, ctx.reg, session.household_id, actor=session.actor)
        name = f"kotihub-{time.strftime('%Y%m%d', time.gmtime(ctx.clock()))}.ndjson"
        return secure(
            StreamingResponse(
                iterate_in_threadpool(export.ndjson(records)),
                media_type="application/x-ndjson",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        )

    @r.get("/app/data/hub-export/{export_id}/age")
    async def hub_copy(export_id: str, session: Member) -> StreamingResponse:
        size, chunks = await run_in_threadpool(
            lambda: hubexports.open_export(
                ctx.reg, session.household_id, export_id, actor=session.actor, now=ctx.clock()
            )
        )
        return StreamingResponse(
            iterate_in_threadpool(chunks),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size), "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    @r.post("/app/data/hub-export")
    async def ask_hub(session: Checked) -> Response:
        await run_in_threadpool(lambda: mydata.ask_hub_export(ctx.reg, session.household_id, actor=session.actor))
        return secure(RedirectResponse("/app/data?asked=1", status_code=303))

    return r
