"""Charts: the household's sensors, and one sensor over a day, a week or six months.

The page is drawn by ``static/js/chart.js`` (uPlot) from ``/app/charts/data``, which answers the buckets that
:func:`cloud_sync.register.series.downsample` computed in SQL, as many as the chart is wide (long spans from the
process's hourly aggregates, :mod:`cloud_sync.register.series_cache`, exact and checked at every request). Scoped to the
session's household: another household's sensor is 404, as is any sensor while the household restricts the
sensors category (the page never shows a restricted category).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from cloud_sync.register import restrictions, series
from cloud_sync.register.errors import NotFound
from cloud_sync.register.series_cache import HourCache
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.homedata import QUANTITIES
from cloud_sync.register.webapp.i18n import register_texts, t
from cloud_sync.register.webapp.render import register_nav, render, secure
from cloud_sync.register.webapp.session import Member

DAY: Final = 86_400.0
SPANS: Final[dict[str, float]] = {"day": DAY, "week": 7 * DAY, "6mo": 183 * DAY}
LIST_WINDOW_S: Final = 30 * DAY
"""Sensors that reported within this are listed."""

register_nav("/app/charts", "nav.charts", 30)
register_texts(
    {
        "fi": {
            "nav.charts": "Kuvaajat",
            "charts.title": "Kuvaajat",
            "charts.intro": "Valitse anturi nähdäksesi sen mittaukset päivän, viikon tai puolen vuoden ajalta.",
            "charts.none": "Ei anturien mittauksia viimeisen 30 päivän ajalta.",
            "charts.restricted": "Olet rajoittanut anturitietojen käsittelyä, joten niitä ei näytetä.",
            "charts.room": "Huone",
            "charts.device": "Laite",
            "charts.quantity": "Suure",
            "charts.last": "Viimeisin mittaus",
            "charts.span": "Aikaväli",
            "charts.span.day": "Päivä",
            "charts.span.week": "Viikko",
            "charts.span.6mo": "6 kuukautta",
            "charts.time": "Aika",
            "charts.min": "Pienin",
            "charts.mean": "Keskiarvo",
            "charts.max": "Suurin",
            "charts.loading": "Ladataan kuvaajaa…",
            "charts.failed": "Kuvaajaa ei voitu ladata.",
            "charts.drawn": "Kuvaaja piirretty: {buckets} jaksoa, {points} mittausta.",
            "charts.figure": "Kuvaaja: {name}, {quantity}, {span}. Ohut viiva pienin ja suurin, paksu keskiarvo.",
            "charts.back": "Kaikki anturit",
            "charts.unnamed": "Nimetön laite",
        },
        "en": {
            "nav.charts": "Charts",
            "charts.title": "Charts",
            "charts.intro": "Choose a sensor to see its readings over a day, a week or six months.",
            "charts.none": "No sensor readings in the last 30 days.",
            "charts.restricted": "You have restricted the processing of sensor data, so it is not shown.",
            "charts.room": "Room",
            "charts.device": "Device",
            "charts.quantity": "Quantity",
            "charts.last": "Last reading",
            "charts.span": "Span",
            "charts.span.day": "Day",
            "charts.span.week": "Week",
            "charts.span.6mo": "6 months",
            "charts.time": "Time",
            "charts.min": "Lowest",
            "charts.mean": "Mean",
            "charts.max": "Highest",
            "charts.loading": "Loading the chart…",
            "charts.failed": "The chart could not be loaded.",
            "charts.drawn": "Chart drawn: {buckets} periods, {points} readings.",
            "charts.figure": "Chart: {name}, {quantity}, {span}. Thin lines lowest and highest, thick line the mean.",
            "charts.back": "All sensors",
            "charts.unnamed": "Unnamed device",
        },
    }
)

_Device = Annotated[str, Query(min_length=1, max_length=128)]
_Quantity = Annotated[str, Query(min_length=1, max_length=32)]
_Span = Annotated[str, Query(pattern="^(day|week|6mo)$")]


def quantity_label(quantity: str, lang: str) -> str:
    """The quantity's name in ``lang`` (Home's words) with its unit; an unknown one as the hub named it."""
    if quantity not in QUANTITIES:
        return quantity
    return f"{t('q.' + quantity, lang)} ({QUANTITIES[quantity]})"


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    hours = HourCache()

    def sensors_shown(household_id: str) -> bool:
        return "sensors" not in restrictions.restricted(ctx.reg, household_id)

    def require_sensor(household_id: str, device: str, quantity: str) -> None:
        # One answer for "not yours", "no such sensor" and "restricted": nothing to tell apart from outside.
        if not sensors_shown(household_id) or not series.has_sensor(ctx.reg.engine, household_id, device, quantity):
            raise NotFound("no such sensor in this household", code="no_sensor")

    @r.get("/app/charts", response_class=HTMLResponse)
    async def charts(request: Request, session: Member) -> HTMLResponse:
        shown = await run_in_threadpool(sensors_shown, session.household_id)
        found = (
            await run_in_threadpool(
                series.sensors, ctx.reg.engine, session.household_id, since=ctx.clock() - LIST_WINDOW_S
            )
            if shown
            else []
        )
        return render(
            request,
            session,
            "charts.html",
            title_key="charts.title",
            sensors=found,
            restricted=not shown,
            qlabel=lambda q: quantity_label(q, session.lang),
        )

    @r.get("/app/chart", response_class=HTMLResponse)
    async def chart(
        request: Request, session: Member, device: _Device, quantity: _Quantity, span: _Span = "day"
    ) -> HTMLResponse:
        await run_in_threadpool(require_sensor, session.household_id, device, quantity)
        await ctx.watching(session.household_id)
        found = await run_in_threadpool(
            series.sensors, ctx.reg.engine, session.household_id, since=ctx.clock() - SPANS["6mo"]
        )
        sensor = next((s for s in found if s["device_id"] == device and s["quantity"] == quantity), None)
        return render(
            request,
            session,
            "chart.html",
            title_key="charts.title",
            # The language switch comes back to this very chart, query included.
            path=f"{request.url.path}?{request.url.query}",
            device=device,
            quantity=quantity,
            qlabel=quantity_label(quantity, session.lang),
            span=span,
            spans=list(SPANS),
            name=(sensor or {}).get("name", ""),
            room=(sensor or {}).get("room", ""),
        )

    @r.get("/app/charts/data")
    async def chart_data(
        session: Member,
        device: _Device,
        quantity: _Quantity,
        span: _Span = "day",
        width: Annotated[int, Query(ge=1, le=10_000)] = 800,
    ) -> Response:
        await run_in_threadpool(require_sensor, session.household_id, device, quantity)
        until = ctx.clock()
        buckets = await run_in_threadpool(
            hours.downsample,
            ctx.reg.engine,
            session.household_id,
            device,
            quantity,
            since=until - SPANS[span],
            until=until,
            buckets=series.bucket_count(width),
        )
        return secure(Response(msgspec.json.encode(buckets.as_json()), media_type="application/json"))

    return r
