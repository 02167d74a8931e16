"""A household's members, its signed member list (only a member's key can extend it; docs/members.md) and the
requests to join it."""

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import memberlog
from cloud_sync.register.auth import Principal
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, Notifier, decode_json, doc, json_response, read_body


def router(reg: Registry, callers: Callers, notifier: Notifier) -> APIRouter:
    r = APIRouter()
    Reader = Annotated[Principal, Depends(callers.scoped("members.read"))]
    Changer = Annotated[Principal, Depends(callers.scoped("members.change"))]

    @r.get("/v1/households/{h}/members")
    def list_members(h: str, who: Reader) -> Response:
        return json_response(reg.members(h, reader=who))

    @r.post("/v1/households/{h}/members", status_code=201, openapi_extra=doc("MemberCreate", "Member", status=201))
    async def add_member(h: str, request: Request, who: Changer) -> Response:
        m = decode_json(await read_body(request, 16 * 1024), p.MemberCreate)
        member = await run_in_threadpool(
            lambda: reg.add_member(h, m.name, m.recipient, email=m.email, phone=m.phone, actor=who.actor)
        )
        notifier.notify()
        return json_response(member, 201)

    @r.patch("/v1/households/{h}/members/{member_id}", status_code=204, openapi_extra=doc("MemberUpdate"))
    async def rectify_member(h: str, member_id: str, request: Request, who: Changer) -> Response:
        u = decode_json(await read_body(request, 16 * 1024), p.MemberUpdate)
        changes = {k: v for k, v in msgspec.structs.asdict(u).items() if v is not None}
        await run_in_threadpool(lambda: reg.update_member(h, member_id, changes, actor=who.actor))
        return Response(status_code=204)

    @r.delete("/v1/households/{h}/members/{member_id}", status_code=204)
    async def remove_member(h: str, member_id: str, who: Changer) -> Response:
        await run_in_threadpool(lambda: reg.remove_member(h, member_id, actor=who.actor))
        notifier.notify()
        return Response(status_code=204)

    @r.get(
        "/v1/households/{h}/member-log",
        openapi_extra=doc(resp="MemberLogEntry", resp_array=True, errors={404: "no such household"}),
    )
    def get_member_log(
        h: str,
        who: Reader,
        after: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=memberlog.MAX_PAGE)] = 100,
    ) -> Response:
        out = memberlog.entries(reg, h, after=after, limit=limit)
        if who.is_operator:
            reg.audit(who.actor, "member_log.read", h)
        return json_response(out)

    @r.post(
        "/v1/households/{h}/member-log",
        status_code=201,
        openapi_extra=doc(
            "SignedMemberList",
            "MemberLogEntry",
            status=201,
            errors={
                404: "no such household",
                409: "not the next version: member_list_stale (that number exists), member_list_gap, member_list_fork",
                422: "member_list_malformed, member_list_bad_signature (not signed by a current member), "
                "member_list_household",
            },
        ),
    )
    async def append_member_log(h: str, request: Request, who: Changer) -> Response:
        signed = decode_json(await read_body(request, 32 * 1024), p.SignedMemberList)
        entry = await run_in_threadpool(lambda: memberlog.append(reg, h, signed, actor=who.actor))
        notifier.notify()
        return json_response(entry, 201)

    @r.get("/v1/households/{h}/member-requests", openapi_extra=doc(resp="MemberRequestRecord", resp_array=True))
    def get_member_requests(h: str, who: Reader) -> Response:
        out = memberlog.requests(reg, h)
        if who.is_operator:
            reg.audit(who.actor, "member_requests.read", h)
        return json_response(out)

    @r.post(
        "/v1/households/{h}/member-requests",
        status_code=201,
        openapi_extra=doc(
            "MemberRequest",
            "MemberRequestRecord",
            status=201,
            errors={404: "no such household", 409: "too_many_requests"},
        ),
    )
    async def post_member_request(
        h: str, request: Request, who: Annotated[Principal, Depends(callers.scoped("members.request"))]
    ) -> Response:
        req = decode_json(await read_body(request, 4096), p.MemberRequest)
        return json_response(await run_in_threadpool(lambda: memberlog.file_request(reg, h, req, actor=who.actor)), 201)

    return r
