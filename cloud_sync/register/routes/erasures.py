"""Erasure: a hub forwards one asked on the hub (mTLS); a household or operator erases a whole household (bearer).
Either way the other side hears of it (a command to the hub, a receipt to the caller)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import retention
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, Notifier, decode_json, doc, json_response, read_body


def router(reg: Registry, callers: Callers, notifier: Notifier) -> APIRouter:
    r = APIRouter()
    Hub = Annotated[HubIdentity, Depends(callers.hub)]

    @r.post("/v1/erasures", openapi_extra=doc("ErasureRequest"))
    async def hub_erasure(request: Request, who: Hub) -> Response:
        req = decode_json(await read_body(request, p.MAX_JSON_BODY_BYTES), p.ErasureRequest)
        receipt = await run_in_threadpool(retention.erase_from_hub, reg, who, req)
        notifier.notify()
        return json_response(receipt)

    @r.post("/v1/households/{h}/erase")
    async def erase(
        h: str, who: Annotated[Principal, Depends(callers.scoped("erase"))], close: bool = False
    ) -> Response:
        summary = await run_in_threadpool(lambda: retention.erase_household(reg, h, actor=who.actor, close=close))
        notifier.notify()
        return json_response(summary)

    return r
