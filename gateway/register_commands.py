"""Commands the register queues for this hub (``alarm_ack``, ``restrict``, ``erase``, ``member_keys``,
``rename``, ``export``): one handler each, named in :func:`table`, and what each touches, in :data:`TOUCHES`. The
uplink fetches them, runs the handler and reports its result; commands that touch nothing in common run beside each
other, the rest in the order the register issued them. A new command is one line in each table and one handler
here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import hub_export
from gateway.model import Category
from gateway.privacy import REGISTER

if TYPE_CHECKING:
    from cloud_sync import protocol as p
    from cloud_sync.uplink import CommandHandler
    from gateway.daemon import Daemon


TOUCHES: dict[str, frozenset[str]] = {
    # Only the sirens: an acknowledgement never waits for a long export (docs/app.md, "Cost, and a limit").
    "alarm_ack": frozenset({"sirens"}),
    # Reads the store as it goes: runs after earlier erasures and restrictions, and later ones wait for it, so the
    # copy holds exactly what the household had when it asked. It is sealed to the member list, so it also waits for
    # an earlier member change (a member removed before the export was asked can never open it) and a later one
    # waits for it. Device names are read as they are then (a rename beside it changes a label, never the data).
    "export": frozenset({"data", "members"}),
    "erase": frozenset({"data", "devices", "members"}),
    "restrict": frozenset({"data"}),
    "rename": frozenset({"devices"}),
    "member_keys": frozenset({"members"}),
}
"""What each command touches (uplink ``command_touches``): two commands that share a word run in issue order."""


def table(daemon: Daemon) -> dict[str, CommandHandler]:
    hub, eraser = daemon.hub, daemon.eraser
    assert hub is not None and eraser is not None

    async def restrict(command: p.Command) -> dict[str, Any]:
        category = Category(str(command.args["category"]))
        await hub.set_restricted(category, bool(command.args.get("on", True)), actor="register")
        return {"restricted": sorted(c.value for c in hub.restricted)}

    async def erase(command: p.Command) -> dict[str, Any]:
        scope, target = str(command.args.get("scope", "all")), str(command.args.get("target", ""))
        theirs = command.args.get("register_receipt")
        return await eraser.request(
            scope,
            target,
            requested_by=REGISTER,
            origin=REGISTER,
            register_receipt=theirs if isinstance(theirs, dict) else None,
        )

    async def member_keys(command: p.Command) -> dict[str, Any]:
        # The signed member list: verified against the household's pinned key before any clip is encrypted to it
        # (the clip spool asks the member list for its recipients at every clip).
        return await asyncio.to_thread(daemon.members.apply_command, command.args)

    async def rename(command: p.Command) -> dict[str, Any]:
        # A member rectified a device's name or room in the app; the next device list carries it back.
        device_id = str(command.args["device_id"])
        name, room = command.args.get("name"), command.args.get("room")
        await hub.rename(
            device_id,
            name=name if isinstance(name, str) else None,
            room=room if isinstance(room, str) else None,
            actor="register",
        )
        return {"device_id": device_id}

    async def alarm_ack(command: p.Command) -> dict[str, Any]:
        # Someone acknowledged the alarm at the register: the sirens go quiet.
        return {"silenced": daemon.sirens.acknowledge() if daemon.sirens is not None else False}

    async def export(command: p.Command) -> dict[str, Any]:
        # The household asked for the hub's copy: sealed to the verified members and uploaded (gateway.hub_export).
        uplink = daemon.uplink
        if uplink is None:
            raise RuntimeError("this hub has no uplink to send its copy through")
        return await hub_export.run(
            hub.store,
            export_id=command.id,
            exports_dir=Path(daemon.config.hub.runtime_dir) / "exports",
            recipients=lambda: daemon.members.recipients,
            hub_name=daemon.config.hub.name,
            spool_dir=daemon.config.state_path / "spool",
            client=uplink.client,
        )

    return {
        "alarm_ack": alarm_ack,
        "export": export,
        "restrict": restrict,
        "erase": erase,
        "member_keys": member_keys,
        "rename": rename,
    }
