"""Clips: the household's camera clips, decrypted and played in the member's own browser (static/js/clips.js).

The page lists complete clips; ``GET /app/clips/{clip_id}/age`` streams one clip's age ciphertext exactly as
stored, to the session's household only, audited as ``clip.read`` by the member. Nothing the browser sends
carries a key: the identity stays in the browser's key store (static/js/keystore.js).
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from cloud_sync.register.webapp import clipstore
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts, t
from cloud_sync.register.webapp.render import register_nav, render
from cloud_sync.register.webapp.session import Member

BASE: Final = "/app/clips"
_ZONE: Final = ZoneInfo("Europe/Helsinki")

register_texts(
    {
        "fi": {
            "nav.clips": "Tallenteet",
            "clips.title": "Kameratallenteet",
            "clips.intro": "Tallenteet on salattu kotisi jäsenten avaimille. Ne avataan vain tällä laitteella: "
            "palvelin näkee pelkän salatun tiedoston.",
            "clips.caption": "Kotisi tallenteet, uusin ensin",
            "clips.when": "Aika",
            "clips.camera": "Kamera",
            "clips.length": "Kesto",
            "clips.action": "Toiminto",
            "clips.play": "Toista",
            "clips.none": "Ei tallenteita.",
            "clips.player": "Tallenteen toisto",
            "clips.download": "Tallenna avattu tallenne tälle laitteelle",
            "clips.js.loading": "Haetaan ja avataan tallennetta…",
            "clips.js.playing": "Toistetaan:",
            "clips.js.nokeys": "Tällä laitteella ei ole avaimiasi. Luo ne Jäsenet-sivulla; uudet avaimet avaavat "
            "vain tallenteet, jotka tehdään sen jälkeen, kun ne on lisätty jäsenluetteloon.",
            "clips.js.fetchfailed": "Tallenteen haku epäonnistui:",
            "clips.js.decryptfailed": "Tallennetta ei voi avata tämän laitteen avaimilla.",
            "clips.js.cannotplay": "Selain ei osaa toistaa tätä tallennemuotoa. Voit tallentaa avatun tiedoston.",
        },
        "en": {
            "nav.clips": "Clips",
            "clips.title": "Camera clips",
            "clips.intro": "Clips are encrypted to your household's members' keys. They are opened only on this "
            "device: the server sees nothing but the encrypted file.",
            "clips.caption": "Your household's clips, newest first",
            "clips.when": "Time",
            "clips.camera": "Camera",
            "clips.length": "Length",
            "clips.action": "Action",
            "clips.play": "Play",
            "clips.none": "No clips.",
            "clips.player": "Clip player",
            "clips.download": "Save the opened clip on this device",
            "clips.js.loading": "Fetching and opening the clip…",
            "clips.js.playing": "Playing:",
            "clips.js.nokeys": "This device holds none of your keys. Create them on the Members page; new keys "
            "open only clips recorded after they were added to the member list.",
            "clips.js.fetchfailed": "Fetching the clip failed:",
            "clips.js.decryptfailed": "This device's keys cannot open the clip.",
            "clips.js.cannotplay": "The browser cannot play this clip's format. You can save the opened file.",
        },
    }
)

register_nav(BASE, "nav.clips", 35)

_JS_TEXTS: Final = ("loading", "playing", "nokeys", "fetchfailed", "decryptfailed", "cannotplay")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, _ZONE).strftime("%Y-%m-%d %H:%M")


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    @r.get(BASE, response_class=HTMLResponse)
    async def clips_page(request: Request, session: Member) -> HTMLResponse:
        rows = await run_in_threadpool(clipstore.list_complete, ctx.reg, session.household_id)
        clips = [
            {"clip_id": c.clip_id, "device": c.device, "when": _when(c.started), "seconds": round(c.duration_s)}
            for c in rows
        ]
        texts = {k: t(f"clips.js.{k}", session.lang) for k in _JS_TEXTS}
        return render(
            request,
            session,
            "clips.html",
            title_key="clips.title",
            clips=clips,
            js_texts=texts,
            member_id=session.member_id,
            base=BASE,
        )

    @r.get(BASE + "/{clip_id}/age")
    async def clip_ciphertext(clip_id: str, session: Member) -> StreamingResponse:
        size, chunks = await run_in_threadpool(
            lambda: clipstore.open_clip(ctx.reg, session.household_id, clip_id, actor=session.actor)
        )
        return StreamingResponse(
            iterate_in_threadpool(chunks),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size), "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    return r
