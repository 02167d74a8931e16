"""Health, enrollment (a one-time token and a CSR) and certificate renewal."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.ratelimit import Rate
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, decode_json, doc, json_response, read_body
from cloud_sync.register.settings import Settings


def router(reg: Registry, settings: Settings, callers: Callers) -> APIRouter:
    r = APIRouter()
    # Refilled over ten minutes; a household gets five sources' worth.
    enroll_rate = Rate(settings.enroll_burst, settings.enroll_burst / 600)
    enroll_rate_hh = Rate(5 * settings.enroll_burst, 5 * settings.enroll_burst / 600)
    limiter = callers.limiter

    @r.get("/v1/health", openapi_extra=doc(resp="Health"))
    async def health() -> Response:
        return json_response(p.Health(status="ok"))

    @r.post("/v1/enroll", openapi_extra=doc("EnrollRequest", "EnrollResponse"))
    async def enroll(request: Request) -> Response:
        # Every attempt counts, not only failures: a token is a secret to guess, and each try signs a CSR. A bucket
        # of its own: on the failed-authentication one ("src"), a technician enrolling a few hubs from one address
        # would have their hubs (and everyone behind that NAT) refused with 429 for minutes.
        src = ("enroll-src", callers.source(request))
        limiter.check(src, enroll_rate, "enrollment attempts from this address")
        limiter.spend(src, enroll_rate)
        req = decode_json(await read_body(request, 64 * 1024), p.EnrollRequest)
        household_id = await run_in_threadpool(reg.enroll_token_household, req.token)
        if household_id is not None:
            hh = ("hh-enroll", household_id)
            limiter.check(hh, enroll_rate_hh, "enrollment attempts for this household")
            limiter.spend(hh, enroll_rate_hh)
        return json_response(await run_in_threadpool(reg.enroll, req))

    Hub = Annotated[HubIdentity, Depends(callers.hub)]

    @r.post("/v1/renew", openapi_extra=doc("RenewRequest", "RenewResponse"))
    async def renew(request: Request, who: Hub) -> Response:
        req = decode_json(await read_body(request, 64 * 1024), p.RenewRequest)
        return json_response(await run_in_threadpool(reg.renew, who, req.csr_pem))

    return r
