"""Commands from the register: long-polled, handed to the hub's handler for their kind, the result reported back
(a failed command is reported, never fatal to the hub)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from cloud_sync import protocol as p
from cloud_sync.uplink.client import JSON_HEADERS, RegisterClient, RegisterRejected, in_thread
from cloud_sync.uplink.link import Link

log = logging.getLogger(__name__)

CommandHandler = Callable[[p.Command], Awaitable[dict[str, Any]]]


async def command_loop(link: Link, handlers: dict[str, CommandHandler]) -> None:
    client = link.client()
    wait = link.config.command_poll_wait
    backoff = link.backoff()
    try:
        while True:
            try:
                async for attempt in link.retrying("diagnostics"):
                    with attempt:
                        resp = await in_thread(
                            client.request, "GET", "/v1/commands", params={"wait": wait}, read_timeout=wait + 15
                        )
                        commands = client.decode(resp, list[p.Command])
                backoff.reset()
            except RegisterRejected as exc:
                log.error("could not read commands from the register: %s", exc)
                await link.pause(backoff.next())
                continue
            for command in commands:
                await _run(link, client, handlers, command)
    finally:
        client.close()


async def _run(link: Link, client: RegisterClient, handlers: dict[str, CommandHandler], command: p.Command) -> None:
    handler = handlers.get(command.kind)
    if handler is None:
        result = p.CommandResult(status="failed", detail={"error": f"this hub cannot {command.kind}"})
    else:
        try:
            result = p.CommandResult(status="done", detail=await handler(command))
        except Exception as exc:  # a failed command is reported to the register, not fatal to the hub
            # A handler may say more than its message, e.g. why a member list was refused (it logs that itself).
            extra = getattr(exc, "detail", None)
            if extra is None:
                log.exception("command %s failed", command.kind)
            result = p.CommandResult(
                status="failed", detail={**(extra if isinstance(extra, dict) else {}), "error": str(exc)[:300]}
            )
    try:
        async for attempt in link.retrying("diagnostics"):
            with attempt:
                await in_thread(
                    client.request,
                    "POST",
                    f"/v1/commands/{command.id}/result",
                    data=msgspec.json.encode(result),
                    headers=JSON_HEADERS,
                )
    except RegisterRejected as exc:  # e.g. 409: a result was already given (our earlier reply got lost)
        log.warning("the register refused the result of command %s: %s", command.kind, exc)
