"""HTTP routes of notifications: contacts, escalation policy, alarms and their acknowledgement, provider callbacks.

Mounted by :func:`cloud_sync.register.app.create_app`. Household routes use the app's role checks; the
acknowledgement link carries its own signed authority; provider callbacks are authenticated by Twilio's request
signature (``X-Twilio-Signature``, checked with the library's validator against our auth token).
"""

import contextlib
import html
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from twilio.twiml.voice_response import VoiceResponse

from cloud_sync.register.auth import Principal
from cloud_sync.register.errors import Forbidden, Invalid, NotFound, RegisterError
from cloud_sync.register.notify import alarms, contacts, dispatch, schema
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.links import Links, load_key
from cloud_sync.register.notify.policy import Policy, policy_json
from cloud_sync.register.registry import Registry, write_audit

log = logging.getLogger(__name__)

_JSON = "application/json"
_ERR = {"content": {_JSON: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "Malformed body",
        401: "No or unknown token",
        403: "Role or household not allowed, or a bad or expired link or signature",
        404: "No such household, member or alarm",
        409: "Acknowledged meanwhile",
        413: "Body too large",
        422: "A field is invalid (the detail names it)",
    }
    return {c: {"description": why[c], **_ERR} for c in codes}


def _ok(schema: dict[str, Any], status: int = 200) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": "OK", "content": {_JSON: {"schema": schema}}}}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(content=msgspec.json.encode(obj), status_code=status, media_type=_JSON)


SCHEMA_TYPES: tuple[Any, ...] = (contacts.Contact, contacts.ContactView, Policy)

ReadBody = Callable[[Request, int], Awaitable[bytes]]


def make_router(
    reg: Registry,
    scoped: Callable[[str], Callable[..., Principal]],
    read_body: ReadBody,
    config: NotifyConfig | None = None,
) -> APIRouter:
    cfg = config or NotifyConfig.from_env()
    links = Links(load_key(reg.settings.state_dir), cfg.public_url)
    r = APIRouter()

    def decode(data: bytes, typ: Any) -> Any:
        try:
            return msgspec.json.decode(data, type=typ)
        except msgspec.ValidationError as exc:
            raise Invalid(f"invalid body: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise Invalid(f"body is not valid JSON: {exc}", status=400, code="bad_json") from exc

    ref = "#/components/schemas/"

    # ---------------------------------------------------------------------------------------- contacts

    @r.get(
        "/v1/households/{h}/contacts",
        responses={**_ok({"type": "array", "items": {"$ref": ref + "ContactView"}}), **_errors(401, 403, 404)},
    )
    def list_contacts(h: str, who: Annotated[Principal, Depends(scoped("members.read"))]) -> Response:
        return _json(contacts.contacts(reg, h, who))

    @r.put(
        "/v1/households/{h}/members/{member_id}/contact",
        status_code=204,
        openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": ref + "Contact"}}}}},
        responses={204: {"description": "Stored"}, **_errors(400, 401, 403, 404, 413, 422)},
    )
    async def put_contact(
        h: str, member_id: str, request: Request, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        c = decode(await read_body(request, 4096), contacts.Contact)
        await run_in_threadpool(lambda: contacts.set_contact(reg, h, member_id, c, actor=who.actor))
        return Response(status_code=204)

    # ------------------------------------------------------------------------------------------ policy

    @r.get(
        "/v1/households/{h}/escalation-policy", responses={**_ok({"$ref": ref + "Policy"}), **_errors(401, 403, 404)}
    )
    def get_policy(h: str, who: Annotated[Principal, Depends(scoped("members.read"))]) -> Response:
        return _json(policy_json(contacts.get_policy(reg, h, who)))

    @r.put(
        "/v1/households/{h}/escalation-policy",
        openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": ref + "Policy"}}}}},
        responses={**_ok({"$ref": ref + "Policy"}), **_errors(400, 401, 403, 404, 413, 422)},
    )
    async def put_policy(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        raw = decode(await read_body(request, 16 * 1024), dict[str, Any])
        policy = await run_in_threadpool(lambda: contacts.set_policy(reg, h, raw, actor=who.actor))
        return _json(policy_json(policy))

    # ------------------------------------------------------------------------------------------ alarms

    @r.get("/v1/households/{h}/alarms", responses={**_ok({"type": "array"}), **_errors(401, 403, 404)})
    def list_alarms(
        h: str,
        who: Annotated[Principal, Depends(scoped("household.read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        with reg.engine.begin() as conn:
            reg.require_household(conn, h)
            out = alarms.history(conn, h, limit=limit)
            if who.is_operator:
                write_audit(conn, who.actor, "alarms.read", h)
        return _json(out)

    def _ack(h: str, alarm_id: str, actor: str, channel: str) -> dict[str, Any]:
        with dispatch.urgent_transaction(reg) as conn:
            out = alarms.acknowledge(conn, h, alarm_id, actor=actor, channel=channel)
        alarms.notify_dispatchers(reg.engine)
        return out

    @r.post(
        "/v1/households/{h}/alarms/{alarm_id}/ack",
        responses={**_ok({"type": "object"}), **_errors(401, 403, 404, 409)},
    )
    async def ack_alarm(h: str, alarm_id: str, who: Annotated[Principal, Depends(scoped("alarms.ack"))]) -> Response:
        return _json(await run_in_threadpool(_ack, h, alarm_id, who.actor, "api"))

    # --------------------------------------------------------------------------------- signed links

    def _link(token: str) -> tuple[str, str, str]:
        alarm_id, member_id = links.read(token)
        with reg.engine.connect() as conn:
            h = conn.execute(
                select(schema.alarms.c.household_id).where(schema.alarms.c.id == alarm_id)
            ).scalar_one_or_none()
        if h is None:
            raise NotFound("this alarm is no longer on record", code="no_alarm")
        return h, alarm_id, member_id

    @r.get("/v1/ack/{token}", response_class=HTMLResponse, responses=_errors(403, 404))
    def ack_page(token: str) -> HTMLResponse:
        _link(token)
        # A button, not an acknowledgement: link previewers fetch links and must not silence an alarm.
        action = html.escape(f"/v1/ack/{token}")
        return HTMLResponse(
            "<!doctype html><meta name=viewport content='width=device-width'><title>Kotihub</title>"
            f"<form method=post action='{action}'><button style='font-size:2em'>Kuittaa hälytys / "
            "Acknowledge</button></form>"
        )

    @r.post("/v1/ack/{token}", response_class=HTMLResponse, responses=_errors(403, 404))
    async def ack_link(token: str) -> HTMLResponse:
        h, alarm_id, member_id = await run_in_threadpool(_link, token)
        out = await run_in_threadpool(_ack, h, alarm_id, f"member:{member_id}", "link")
        when = time.strftime("%H:%M:%S", time.localtime(out["acked_at"]))
        return HTMLResponse(f"<!doctype html><title>Kotihub</title><p>Kuitattu / acknowledged {when}</p>")

    # ------------------------------------------------------------------------------ provider callbacks

    async def _twilio_form(request: Request) -> dict[str, str]:
        if cfg.twilio is None:
            raise NotFound("Twilio is not configured on this register", code="no_provider")
        body = await read_body(request, 64 * 1024)
        params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = cfg.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("x-twilio-signature", "")
        if not cfg.twilio.validator.validate(url, params, signature):
            log.warning("a Twilio callback with a bad signature was refused")
            raise Forbidden("bad X-Twilio-Signature", code="bad_signature")
        return params

    @r.post("/v1/notify/twilio/status", status_code=204, responses=_errors(403, 404))
    async def twilio_status(request: Request, job: Annotated[str, Query(max_length=220)]) -> Response:
        params = await _twilio_form(request)
        sid = params.get("MessageSid") or params.get("CallSid") or ""
        status = params.get("MessageStatus") or params.get("CallStatus") or ""

        def record() -> bool:
            with dispatch.urgent_transaction(reg) as conn:
                return dispatch.job_status(conn, job, sid, status)

        if not await run_in_threadpool(record):
            raise NotFound("no such notification", code="no_job")
        return Response(status_code=204)

    @r.post("/v1/notify/twilio/gather", responses=_errors(403, 404))
    async def twilio_gather(request: Request, job: Annotated[str, Query(max_length=220)]) -> Response:
        params = await _twilio_form(request)

        def press() -> str:
            with reg.engine.connect() as conn:
                row = conn.execute(schema.notify_jobs.select().where(schema.notify_jobs.c.id == job)).mappings().first()
            if row is None:
                raise NotFound("no such notification", code="no_job")
            if params.get("Digits") != "1":
                return "fi-FI"
            # Already acknowledged: thank them all the same.
            with contextlib.suppress(RegisterError):
                _ack(row["household_id"], row["alarm_id"], f"member:{row['member_id']}", "voice")
            return "ok"

        result = await run_in_threadpool(press)
        resp = VoiceResponse()
        resp.say("Kiitos. Hälytys on kuitattu." if result == "ok" else "Hälytystä ei kuitattu.", language="fi-FI")
        return Response(content=str(resp), media_type="application/xml")

    return r
