"""Commands from the register: long-polled, handed to the hub's handler for their kind, the result reported back
(a failed command is reported, never fatal to the hub).

Commands run beside each other unless they touch the same thing. Each kind names what it touches (``touches``, the
hub's table in gateway/register_commands.py), and a command starts only once every earlier command that touches any
of the same has finished. So a long ``export`` does not hold up an ``alarm_ack``, while an ``erase`` queued after
the export still waits for it (and an export after an erase for the erase), and commands of one kind keep their
order. A kind that names nothing touches everything: it waits for all before it and all after it wait for it, which
is how every command ran before kinds said what they touch.

The register resends every command until its result is in. The poll names the commands the hub runs now
(``held``), which the register leaves out of its answer, so a long export neither comes back nor ends the long-poll
early; a command the loop already runs, or has just answered (a poll that crossed the result), is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import msgspec

from cloud_sync import protocol as p
from cloud_sync.uplink.client import JSON_HEADERS, RegisterClient, RegisterRejected, in_thread
from cloud_sync.uplink.link import Link

log = logging.getLogger(__name__)

CommandHandler = Callable[[p.Command], Awaitable[dict[str, Any]]]

EVERYTHING: Final = frozenset({"*"})
"""What a kind touches when it names nothing: it runs alone, in order."""
_COMMAND_ID: Final = re.compile(p.COMMAND_ID_PATTERN)
ANSWERED_KEPT: Final = 256
"""How many answered command ids the loop remembers, to skip one a poll returned as its result went in."""


class InFlight:
    """The commands the hub runs or waits to run, in the order they came, and those it has lately answered."""

    def __init__(self, touches: Mapping[str, frozenset[str]]) -> None:
        self._touches = touches
        self._running: dict[str, tuple[frozenset[str], asyncio.Event]] = {}
        self._answered: collections.deque[str] = collections.deque(maxlen=ANSWERED_KEPT)

    def touches(self, kind: str) -> frozenset[str]:
        return self._touches.get(kind) or EVERYTHING

    def held(self) -> list[str]:
        """The ids the register need not resend now (the oldest first, as many as it takes). Only ids of the form
        it checks: one it would refuse would make it refuse every poll."""
        ids = [i for i in self._running if _COMMAND_ID.fullmatch(i)]
        return ids[: p.MAX_HELD_COMMANDS]

    def admit(self, command: p.Command) -> list[asyncio.Event] | None:
        """Takes ``command`` on: what it must wait for (the earlier commands that touch what it touches), or
        ``None`` if it runs already or was just answered."""
        if command.id in self._running or command.id in self._answered:
            return None
        mine = self.touches(command.kind)
        before = [done for theirs, done in self._running.values() if _overlap(mine, theirs)]
        self._running[command.id] = (mine, asyncio.Event())
        return before

    def finish(self, command_id: str) -> None:
        _, done = self._running.pop(command_id)
        self._answered.append(command_id)
        done.set()


def _overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    return "*" in a or "*" in b or not a.isdisjoint(b)


async def command_loop(
    link: Link, handlers: dict[str, CommandHandler], touches: Mapping[str, frozenset[str]] | None = None
) -> None:
    """Polls for commands and runs each as a task of its own, as :class:`InFlight` allows; ends (cancelling them)
    when cancelled or when a command's task fails unexpectedly (the supervisor starts it again)."""
    # Results go on the bulk lanes' connection (one request at a time, so a result waits at most one batch), not
    # on the long-poll's, where they would wait up to 55 s; a hub still holds three connections (docs/scale.md).
    poll, answer = link.client(), link.client(shared=True)
    flight = InFlight(touches or {})
    backoff = link.backoff()
    try:
        async with asyncio.TaskGroup() as tasks:
            while True:
                try:
                    async for attempt in link.retrying("diagnostics"):
                        with attempt:
                            wait = link.command_wait()
                            resp = await in_thread(
                                poll.request,
                                "GET",
                                "/v1/commands",
                                params={"wait": wait, "held": flight.held(), "live": int(link.watched())},
                                read_timeout=wait + 15,
                            )
                            commands = poll.decode(resp, list[p.Command])
                            link.heard_watched(resp.headers.get(p.LIVE_HEADER))
                            link.heard_wait_max(resp.headers.get(p.WAIT_MAX_HEADER))
                except RegisterRejected as exc:
                    if exc.status == 422 and link.wait_max > p.LEGACY_COMMAND_WAIT_S:
                        # A register rolled back to a release that takes 30 s at most (and does not say so): ask
                        # for what every register takes until one says more.
                        log.warning("the register refused a %.0f s long-poll; waiting 30 s at most", link.wait_max)
                        link.heard_wait_max(None)
                        continue
                    log.error("could not read commands from the register: %s", exc)
                    await link.pause(backoff.next())
                    continue
                fresh = 0
                for command in commands:
                    before = flight.admit(command)
                    if before is None:
                        continue
                    fresh += 1
                    tasks.create_task(
                        _run_after(before, link, answer, handlers, command, flight),
                        name=f"command {command.kind}",
                    )
                if commands and not fresh:
                    # Only commands in hand: a register that ignores ``held`` answers at once with them; not in a loop.
                    await link.pause(backoff.next())
                else:
                    backoff.reset()
    finally:
        poll.close()
        link.release(answer)


async def _run_after(
    before: list[asyncio.Event],
    link: Link,
    client: RegisterClient,
    handlers: dict[str, CommandHandler],
    command: p.Command,
    flight: InFlight,
) -> None:
    try:
        for done in before:
            await done.wait()
        await _report(link, client, command, await _result(handlers, command))
    finally:
        flight.finish(command.id)


async def _result(handlers: dict[str, CommandHandler], command: p.Command) -> p.CommandResult:
    handler = handlers.get(command.kind)
    if handler is None:
        return p.CommandResult(status="failed", detail={"error": f"this hub cannot {command.kind}"})
    try:
        return p.CommandResult(status="done", detail=await handler(command))
    except Exception as exc:  # a failed command is reported to the register, not fatal to the hub
        # A handler may say more than its message, e.g. why a member list was refused (it logs that itself).
        extra = getattr(exc, "detail", None)
        if extra is None:
            log.exception("command %s failed", command.kind)
        return p.CommandResult(
            status="failed", detail={**(extra if isinstance(extra, dict) else {}), "error": str(exc)[:300]}
        )


async def _report(link: Link, client: RegisterClient, command: p.Command, result: p.CommandResult) -> None:
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
