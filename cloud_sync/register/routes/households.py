"""A household's own records for its members and the operator (bearer): the household, consents, hubs, devices,
readings and events, the audit log and the full export."""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import export, ingest
from cloud_sync.register.auth import Principal
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, decode_json, doc, json_response, read_body


def router(reg: Registry, callers: Callers) -> APIRouter:
    r = APIRouter()
    scoped, operator_read = callers.scoped, callers.operator_read

    @r.get("/v1/households/{h}")
    def household(h: str, who: Annotated[Principal, Depends(scoped("household.read"))]) -> Response:
        operator_read(who, "household.read", h)
        return json_response(reg.household(h))

    @r.get("/v1/households/{h}/consents", openapi_extra=doc(resp="Consent"))
    def get_consents(h: str, who: Annotated[Principal, Depends(scoped("consents.read"))]) -> Response:
        return json_response(reg.consent(h, reader=who))

    @r.put("/v1/households/{h}/consents", openapi_extra=doc("ConsentUpdate", "Consent"))
    async def put_consents(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("consents.change"))]
    ) -> Response:
        c = decode_json(await read_body(request, 4096), p.ConsentUpdate)
        return json_response(
            await run_in_threadpool(
                lambda: reg.set_consent(h, marketing=c.marketing, marketing_ban=c.marketing_ban, actor=who.actor)
            )
        )

    @r.get("/v1/households/{h}/hubs")
    def list_hubs(h: str, who: Annotated[Principal, Depends(scoped("hubs.read"))]) -> Response:
        operator_read(who, "hubs.read", h)
        return json_response(reg.hubs(h))

    @r.get("/v1/households/{h}/devices")
    def list_devices(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        return json_response(ingest.devices(reg, h, who))

    def _query(kind: str) -> Callable[..., Response]:
        def handler(
            h: str,
            who: Annotated[Principal, Depends(scoped("data.read"))],
            device_id: Annotated[str | None, Query(max_length=128)] = None,
            since: float | None = None,
            until: float | None = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        ) -> Response:
            return json_response(
                ingest.query(reg, kind, h, who, device_id=device_id, since=since, until=until, limit=limit)
            )

        return handler

    r.get("/v1/households/{h}/readings")(_query("readings"))
    r.get("/v1/households/{h}/events")(_query("events"))

    @r.get("/v1/households/{h}/audit")
    def get_audit(
        h: str,
        who: Annotated[Principal, Depends(scoped("audit.read"))],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Response:
        operator_read(who, "audit.read", h)
        return json_response(reg.audit_entries(h, limit=limit))

    @r.get("/v1/households/{h}/export")
    async def export_data(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        records = await run_in_threadpool(lambda: export.export_household(reg, h, actor=who.actor))
        return StreamingResponse(iterate_in_threadpool(export.ndjson(records)), media_type="application/x-ndjson")

    return r
