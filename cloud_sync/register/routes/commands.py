"""Commands: a hub long-polls for its own and reports results (mTLS); a household or operator lists and queues them
(bearer)."""

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import watching
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.errors import Forbidden
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, Notifier, decode_json, doc, json_response, read_body
from cloud_sync.register.settings import Settings
from cloud_sync.register.wakeups import wait_for

CommandId = Annotated[str, StringConstraints(pattern=p.COMMAND_ID_PATTERN)]

# Commands a household app or an operator may queue; member_keys, alarm_ack and rename are the register's own.
API_COMMAND_KINDS = ("erase", "export", "restrict")


def router(
    reg: Registry, settings: Settings, callers: Callers, notifier: Notifier, watched: watching.Watching
) -> APIRouter:
    r = APIRouter()
    HubCertificate = Annotated[HubIdentity, Depends(callers.hub_certificate)]
    Hub = Annotated[HubIdentity, Depends(callers.hub)]

    @r.get("/v1/commands")
    async def get_commands(
        request: Request,
        who: HubCertificate,
        wait: Annotated[float, Query(ge=0, le=p.MAX_COMMAND_WAIT_S)] = 0.0,
        held: Annotated[list[CommandId] | None, Query(max_length=p.MAX_HELD_COMMANDS)] = None,
        live: bool | None = None,
    ) -> Response:
        # ``held``: commands the hub runs now (a long export); left out, so the long-poll waits for new ones only.
        # ``live``: whether the hub last heard that a member has the app open; answered at once when that changed.
        held_ids = frozenset(held or ())
        deadline = time.monotonic() + wait
        source = callers.source(request)

        def read(check: bool) -> list[p.Command]:
            # The first read checks the hub on the same connection: an idle long-poll costs one checkout.
            with callers.refusals_counted(source):
                return reg.pending_commands(who, held_ids, check=check)

        pending: list[p.Command] = []
        first = True
        read_at: int | None = None  # the notifier's epoch at the last read; None: read now
        while True:
            # Subscribed before the read, so that a command queued (or the household watched) meanwhile still wakes
            # the wait below.
            with notifier.subscription(who.hub_id, watching.wake_key(who.household_id)) as woken:
                if read_at is None or not notifier.quiet_since(read_at):
                    read_at = notifier.epoch
                    pending = await run_in_threadpool(read, first)
                    first = False
                watched_s = watched.seconds_left(who.household_id)
                remaining = deadline - time.monotonic()
                changed = live is not None and live != (watched_s > 0)
                if pending or changed or remaining <= 0 or notifier.closing:
                    resp = json_response(pending)
                    resp.headers[p.WAIT_MAX_HEADER] = f"{p.MAX_COMMAND_WAIT_S:g}"
                    if watched_s > 0:
                        resp.headers[p.LIVE_HEADER] = str(max(1, min(int(watched_s), int(p.MAX_LIVE_S))))
                    return resp
                # While LISTEN is up, only a notification (or the watched window's end) makes the next read: an
                # idle hub costs one read per long-poll, not one every command_poll_interval_s, and none at its end.
                reread = notifier.reread_s(settings.command_poll_interval_s) or remaining
                await wait_for(woken, min(remaining, reread, watched_s or remaining))
                if woken.is_set():
                    read_at = None  # read again: a command may have been queued

    @r.post("/v1/commands/{command_id}/result", openapi_extra=doc("CommandResult"))
    async def command_result(command_id: str, request: Request, who: Hub) -> Response:
        result = decode_json(await read_body(request, p.MAX_JSON_BODY_BYTES), p.CommandResult)
        await run_in_threadpool(reg.command_result, who, command_id, result)
        return json_response({"ok": True})

    @r.get("/v1/households/{h}/commands")
    def list_commands(
        h: str,
        request: Request,
        who: Annotated[Principal, Depends(callers.scoped("commands.read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> Response:
        callers.operator_read(who, "commands.read", h)
        page = reg.commands(h, limit=limit + 1, after=after)
        resp = json_response(page[:limit])
        if len(page) > limit:
            # RFC 8288: the next page starts after the last command of this one.
            nxt = request.url.include_query_params(limit=limit, after=page[limit - 1]["id"])
            resp.headers["Link"] = f'<{nxt}>; rel="next"'
        return resp

    @r.post("/v1/households/{h}/commands", status_code=201, openapi_extra=doc("CommandRequest"))
    async def post_command(
        h: str, request: Request, who: Annotated[Principal, Depends(callers.scoped("commands.change"))]
    ) -> Response:
        c = decode_json(await read_body(request, 64 * 1024), p.CommandRequest)
        if c.kind not in API_COMMAND_KINDS:
            # Member keys decide who can decrypt clips: only the register itself pushes them, from the member list,
            # so no operator can make hubs encrypt to a key of its choosing.
            raise Forbidden(f"only {', '.join(API_COMMAND_KINDS)} can be queued here", code="command_not_allowed")
        ids = await run_in_threadpool(lambda: reg.queue_command(h, c.kind, c.args, hub_id=c.hub_id, actor=who.actor))
        notifier.notify()
        return json_response({"ids": ids}, 201)

    return r
