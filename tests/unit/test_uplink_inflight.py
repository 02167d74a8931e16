"""The uplink's bookkeeping of commands in flight (cloud_sync/uplink/commands.py): who waits for whom, what the poll
says it holds, and that a resent or just-answered command is not taken twice."""

from __future__ import annotations

import asyncio

from cloud_sync import protocol as p
from cloud_sync.uplink.commands import EVERYTHING, InFlight
from gateway.register_commands import TOUCHES


def command(n: int, kind: str) -> p.Command:
    return p.Command(id=f"cmd_{n:016x}", kind=kind, args={}, issued_at=float(n))  # type: ignore[arg-type]


def test_a_command_waits_only_for_earlier_ones_that_touch_what_it_touches() -> None:
    async def main() -> None:
        flight = InFlight(TOUCHES)
        export, ack, erase = command(1, "export"), command(2, "alarm_ack"), command(3, "erase")
        assert flight.admit(export) == []
        assert flight.admit(ack) == [], "the sirens are not the export's"
        waits = flight.admit(erase)
        assert waits is not None and len(waits) == 1 and not waits[0].is_set()
        assert flight.held() == [export.id, ack.id, erase.id]
        flight.finish(export.id)
        assert waits[0].is_set(), "the erase may start once the export is done"
        assert flight.admit(export) is None, "answered: a poll that crossed its result does not bring it back"
        assert flight.admit(ack) is None, "still running: taken once"
        assert flight.held() == [ack.id, erase.id]

    asyncio.run(main())


def test_an_export_is_sealed_to_the_members_of_when_it_was_asked() -> None:
    """A member change issued before an export runs first (a member removed then can never open the copy); one
    issued after waits for the export (sealed to those who were members when the household asked)."""

    async def main() -> None:
        flight = InFlight(TOUCHES)
        removal, export, later = command(1, "member_keys"), command(2, "export"), command(3, "member_keys")
        assert flight.admit(removal) == []
        waits = flight.admit(export)
        assert waits is not None and len(waits) == 1, "the export waits for the member change before it"
        after = flight.admit(later)
        assert after is not None and len(after) == 2, "a later member change waits for the export (and the first)"
        flight.finish(removal.id)
        assert waits[0].is_set()

    asyncio.run(main())


def test_a_kind_that_names_nothing_runs_alone() -> None:
    async def main() -> None:
        flight = InFlight({"alarm_ack": frozenset({"sirens"})})
        assert flight.touches("firmware") == EVERYTHING
        assert flight.admit(command(1, "alarm_ack")) == []
        assert len(flight.admit(command(2, "firmware")) or []) == 1
        # After it: waits for it, and for the earlier acknowledgement (one kind keeps its order).
        assert len(flight.admit(command(3, "alarm_ack")) or []) == 2

    asyncio.run(main())


def test_the_poll_names_only_ids_the_register_takes_and_no_more_than_it_takes() -> None:
    async def main() -> None:
        flight = InFlight(TOUCHES)
        flight.admit(p.Command(id="legacy id", kind="rename", args={}, issued_at=0.0))
        for n in range(p.MAX_HELD_COMMANDS + 5):
            flight.admit(command(n, "rename"))
        held = flight.held()
        assert len(held) == p.MAX_HELD_COMMANDS and "legacy id" not in held
        assert held[0] == command(0, "rename").id, "the oldest first: those the register would resend"

    asyncio.run(main())
