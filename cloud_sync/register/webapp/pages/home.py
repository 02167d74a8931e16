"""Home: the hub (online, last contact), devices by room with their latest values, battery and online/offline, and
the open alarms with an Acknowledge button (pages/alarms.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cloud_sync.register.notify import texts as alarm_texts
from cloud_sync.register.webapp import homedata
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts, t
from cloud_sync.register.webapp.render import register_nav, render
from cloud_sync.register.webapp.session import Member

LOW_BATTERY: Final = 20.0


def when(ts: float | None, lang: str, now: float) -> str:
    """A time the member reads: "14:05" today, else "3.5. 14:05" (fi) / "3 May 14:05" (en), local time."""
    if ts is None:
        return t("home.never", lang)
    at = datetime.fromtimestamp(ts, UTC).astimezone()
    today = datetime.fromtimestamp(now, UTC).astimezone().date()
    clock = at.strftime("%H:%M")
    if at.date() == today:
        return clock
    return f"{at.day}.{at.month}. {clock}" if lang == "fi" else f"{at.day} {at.strftime('%b')} {clock}"


def number(value: float, lang: str) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    return text.replace(".", ",") if lang == "fi" else text


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(prefix="/app")

    @r.get("/home")
    async def home(request: Request, session: Member) -> Response:
        await ctx.watching(session.household_id)
        now = ctx.clock()

        def load() -> homedata.Home:
            with ctx.reg.engine.connect() as conn:
                return homedata.read(conn, session.household_id, now)

        data = await run_in_threadpool(load)
        lang = session.lang
        return render(
            request,
            session,
            "home.html",
            title_key="home.title",
            home=data,
            now=now,
            when=lambda ts: when(ts, lang, now),
            number=lambda v: number(v, lang),
            headline=lambda a: alarm_texts.headline(a["category"], a["place"], lang, late=a["late"]),
            low_battery=LOW_BATTERY,
        )

    return r


register_nav("/app/home", "nav.home", 10)
register_texts(
    {
        "fi": {
            "home.title": "Koti",
            "home.hub": "Kotihub",
            "home.hubs.none": "Kotihubia ei ole vielä otettu käyttöön.",
            "home.online": "Yhteydessä",
            "home.offline": "Ei yhteyttä",
            "home.unknown": "Ei tietoa",
            "home.lastcontact": "Viimeisin yhteys",
            "home.never": "ei koskaan",
            "home.devices": "Laitteet",
            "home.devices.none": "Laitteita ei ole vielä.",
            "home.noroom": "Ei huonetta",
            "home.battery": "Paristo",
            "home.battery.low": "vähissä",
            "home.status": "Tila",
            "home.lastheard": "Viimeksi kuultu",
            "home.novalues": "Ei lukemia vielä.",
            "home.alarms": "Avoimet hälytykset",
            "home.alarms.none": "Ei avoimia hälytyksiä.",
            "home.raised": "Alkoi",
            "q.temperature": "Lämpötila",
            "q.humidity": "Kosteus",
            "q.co2": "Hiilidioksidi",
            "q.pm25": "Pienhiukkaset",
            "q.illuminance": "Valoisuus",
            "q.pressure": "Ilmanpaine",
            "q.smoke_density": "Savun tiheys",
            "q.voltage": "Jännite",
            "q.battery": "Paristo",
        },
        "en": {
            "home.title": "Home",
            "home.hub": "Home hub",
            "home.hubs.none": "No home hub has been set up yet.",
            "home.online": "Online",
            "home.offline": "Offline",
            "home.unknown": "Unknown",
            "home.lastcontact": "Last contact",
            "home.never": "never",
            "home.devices": "Devices",
            "home.devices.none": "No devices yet.",
            "home.noroom": "No room",
            "home.battery": "Battery",
            "home.battery.low": "low",
            "home.status": "Status",
            "home.lastheard": "Last heard",
            "home.novalues": "No readings yet.",
            "home.alarms": "Open alarms",
            "home.alarms.none": "No open alarms.",
            "home.raised": "Started",
            "q.temperature": "Temperature",
            "q.humidity": "Humidity",
            "q.co2": "Carbon dioxide",
            "q.pm25": "Fine particles",
            "q.illuminance": "Illuminance",
            "q.pressure": "Air pressure",
            "q.smoke_density": "Smoke density",
            "q.voltage": "Voltage",
            "q.battery": "Battery",
        },
    }
)
