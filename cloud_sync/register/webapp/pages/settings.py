"""Settings: restrict a category, rectify device names and rooms, contacts and the alarm escalation policy,
marketing consents. Plain forms (no JavaScript), each CSRF-checked and carried out by the register's existing
functions, audited as the member. A bad value re-renders the page with the reason (422), nothing half-saved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cloud_sync.register import db, rectify, restrictions
from cloud_sync.register.errors import RegisterError
from cloud_sync.register.notify import contacts
from cloud_sync.register.notify.policy import CHANNELS, HEALTH_CATEGORIES, policy_json
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import register_texts
from cloud_sync.register.webapp.render import register_nav, render, secure
from cloud_sync.register.webapp.session import Checked, Member, MemberSession

register_nav("/app/settings", "nav.settings", 60)
register_texts(
    {
        "fi": {
            "nav.settings": "Asetukset",
            "settings.title": "Asetukset",
            "settings.saved": "Tallennettu.",
            "settings.error": "Ei tallennettu: tarkista arvot.",
            "settings.save": "Tallenna",
            "restrict.title": "Käsittelyn rajoittaminen",
            "restrict.intro": "Rajoitettua tietoa ei kerätä eikä lähetetä, eikä sitä näytetä sovelluksessa. "
            "Jo kerätty tieto säilyy, kunnes se vanhenee tai poistat sen.",
            "restrict.on": "Rajoitettu",
            "restrict.off": "Käytössä",
            "restrict.set_on": "Rajoita",
            "restrict.set_off": "Ota käyttöön",
            "category.sensors": "Anturit",
            "category.alarms": "Hälytykset",
            "category.camera": "Kameratallennus",
            "category.presence": "Läsnäolo (liike, ovet)",
            "category.diagnostics": "Diagnostiikka",
            "rectify.title": "Laitteiden nimet ja huoneet",
            "rectify.none": "Ei laitteita.",
            "rectify.name": "Nimi",
            "rectify.room": "Huone",
            "rectify.device": "Laite",
            "contacts.title": "Yhteystiedot hälytyksiä varten",
            "contacts.none": "Ei jäseniä.",
            "contacts.phone": "Puhelin (+358…)",
            "contacts.email": "Sähköposti",
            "contacts.language": "Kieli",
            "contacts.order": "Soittojärjestys",
            "contacts.lang.fi": "suomi",
            "contacts.lang.en": "englanti",
            "policy.title": "Hälytysten eteneminen",
            "policy.smoke": "Savuhälytys: vaiheet",
            "policy.step": "{after} s kuluttua: {channels}{order}",
            "policy.in_order": ", yksi kerrallaan soittojärjestyksessä",
            "policy.desk": "Hälytyskeskukselle, jos kuittaamatta (sekuntia)",
            "policy.health": "Kunnonvalvonnan ilmoitukset",
            "policy.quiet": "Hiljainen aika (ei koske savuhälytystä)",
            "policy.quiet_start": "Alkaa",
            "policy.quiet_end": "Päättyy",
            "policy.muted": "Älä ilmoita näistä",
            "channel.sms": "tekstiviesti",
            "channel.voice": "puhelu",
            "channel.email": "sähköposti",
            "health.hub_silent": "keskitin hiljaa",
            "health.device_offline": "laite ei vastaa",
            "health.battery_low": "paristo vähissä",
            "health.detector_fault": "ilmaisimen vika",
            "health.tamper": "laitetta käsitelty",
            "health.test": "testi",
            "health.end_of_life": "käyttöikä päättymässä",
            "health.storage_full": "tallennustila täynnä",
            "consents.title": "Markkinointi",
            "consents.marketing": "Saa lähettää minulle markkinointia",
            "consents.ban": "Kiellän kaiken suoramarkkinoinnin",
            "consents.both": "Et voi sekä antaa lupaa että kieltää.",
        },
        "en": {
            "nav.settings": "Settings",
            "settings.title": "Settings",
            "settings.saved": "Saved.",
            "settings.error": "Not saved: check the values.",
            "settings.save": "Save",
            "restrict.title": "Restricting processing",
            "restrict.intro": "Restricted data is not collected or sent, and it is not shown in the app. Data "
            "already collected stays until it expires or you erase it.",
            "restrict.on": "Restricted",
            "restrict.off": "In use",
            "restrict.set_on": "Restrict",
            "restrict.set_off": "Resume",
            "category.sensors": "Sensors",
            "category.alarms": "Alarms",
            "category.camera": "Camera recording",
            "category.presence": "Presence (motion, doors)",
            "category.diagnostics": "Diagnostics",
            "rectify.title": "Device names and rooms",
            "rectify.none": "No devices.",
            "rectify.name": "Name",
            "rectify.room": "Room",
            "rectify.device": "Device",
            "contacts.title": "Contact details for alarms",
            "contacts.none": "No members.",
            "contacts.phone": "Phone (+358…)",
            "contacts.email": "E-mail",
            "contacts.language": "Language",
            "contacts.order": "Call order",
            "contacts.lang.fi": "Finnish",
            "contacts.lang.en": "English",
            "policy.title": "How alarms escalate",
            "policy.smoke": "Smoke alarm: steps",
            "policy.step": "After {after} s: {channels}{order}",
            "policy.in_order": ", one at a time in call order",
            "policy.desk": "To the alarm desk if unacknowledged (seconds)",
            "policy.health": "Health notifications",
            "policy.quiet": "Quiet hours (never for smoke)",
            "policy.quiet_start": "Start",
            "policy.quiet_end": "End",
            "policy.muted": "Do not tell me about",
            "channel.sms": "text message",
            "channel.voice": "phone call",
            "channel.email": "e-mail",
            "health.hub_silent": "hub silent",
            "health.device_offline": "device offline",
            "health.battery_low": "battery low",
            "health.detector_fault": "detector fault",
            "health.tamper": "device tampered with",
            "health.test": "test",
            "health.end_of_life": "end of life",
            "health.storage_full": "storage full",
            "consents.title": "Marketing",
            "consents.marketing": "You may send me marketing",
            "consents.ban": "I forbid all direct marketing",
            "consents.both": "You cannot both consent and forbid.",
        },
    }
)

_Saver = Callable[[str, str, FormData], object]


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    reg = ctx.reg

    def view(household_id: str) -> dict[str, Any]:
        with reg.engine.connect() as conn:
            devices = [
                dict(d)
                for d in conn.execute(
                    db.devices.select()
                    .where(db.devices.c.household_id == household_id)
                    .order_by(db.devices.c.room, db.devices.c.name)
                ).mappings()
            ]
        return {
            "categories": restrictions.CATEGORIES,
            "restricted": restrictions.restricted(reg, household_id),
            "devices": devices,
            "people": contacts.contacts(reg, household_id),
            "policy": contacts.get_policy(reg, household_id),
            "consent": reg.consent(household_id),
            "channels": CHANNELS,
            "health_categories": HEALTH_CATEGORIES,
        }

    async def page(request: Request, session: MemberSession, status: int = 200, **extra: Any) -> HTMLResponse:
        values = await run_in_threadpool(view, session.household_id)
        return render(
            request, session, "settings.html", title_key="settings.title", status_code=status, **values, **extra
        )

    @r.get("/app/settings", response_class=HTMLResponse)
    async def settings(request: Request, session: Member) -> HTMLResponse:
        return await page(request, session, saved=request.query_params.get("saved", ""))

    # Each form: parse, carry out as the member, then back to the page (303) or the page with the reason (422).

    def restrict(household_id: str, actor: str, form: FormData) -> object:
        return restrictions.set_restricted(
            reg, household_id, _text(form, "category"), _text(form, "on") == "yes", actor=actor
        )

    def device(household_id: str, actor: str, form: FormData) -> object:
        return rectify.rectify_device(
            reg,
            household_id,
            _text(form, "device_id"),
            name=_text(form, "name"),
            room=_text(form, "room"),
            actor=actor,
        )

    def contact(household_id: str, actor: str, form: FormData) -> object:
        try:
            c = msgspec.convert(
                {
                    "phone": _text(form, "phone").replace(" ", ""),
                    "email": _text(form, "email").strip(),
                    "language": _text(form, "language"),
                    "call_order": int(_text(form, "call_order") or 0),
                },
                contacts.Contact,
            )
        except (msgspec.ValidationError, ValueError) as exc:
            raise RegisterError(str(exc), status=422, code="invalid") from exc
        contacts.set_contact(reg, household_id, _text(form, "member_id"), c, actor=actor)
        return None

    def policy(household_id: str, actor: str, form: FormData) -> object:
        current = policy_json(contacts.get_policy(reg, household_id))
        try:
            desk = int(_text(form, "desk_after_s"))
        except ValueError as exc:
            raise RegisterError("desk_after_s is not a number", status=422, code="invalid") from exc
        current |= {
            "desk_after_s": desk,
            "quiet_start": _text(form, "quiet_start"),
            "quiet_end": _text(form, "quiet_end"),
            "health": [c for c in CHANNELS if form.get(f"health_{c}") == "yes"],
            "restricted": [c for c in HEALTH_CATEGORIES if form.get(f"mute_{c}") == "yes"],
        }
        return contacts.set_policy(reg, household_id, current, actor=actor)

    def consents(household_id: str, actor: str, form: FormData) -> object:
        return reg.set_consent(
            household_id,
            marketing=form.get("marketing") == "yes",
            marketing_ban=form.get("marketing_ban") == "yes",
            actor=actor,
        )

    def form_route(section: str, save: _Saver) -> None:
        async def handler(request: Request, session: Checked) -> Response:
            form = await request.form()
            actor = session.actor
            try:
                await run_in_threadpool(save, session.household_id, actor, form)
            except RegisterError as exc:
                if exc.status in (401, 403, 404):
                    raise
                return await page(request, session, status=422, failed=section, code=exc.code)
            return secure(RedirectResponse(f"/app/settings?saved={section}#{section}", status_code=303))

        r.add_api_route(f"/app/settings/{section}", handler, methods=["POST"], response_model=None)

    for section, save in (
        ("restrict", restrict),
        ("device", device),
        ("contact", contact),
        ("policy", policy),
        ("consents", consents),
    ):
        form_route(section, save)
    return r
