"""Commands the register queues for this hub (``restrict``, ``erase``, ``member_keys``): one handler each, named
in :func:`table`. The uplink fetches them, runs the handler and reports its result. A new command is one line in the
table and one handler here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gateway.model import Category

if TYPE_CHECKING:
    from cloud_sync import protocol as p
    from cloud_sync.uplink import CommandHandler
    from gateway.daemon import Daemon


def table(daemon: Daemon) -> dict[str, CommandHandler]:
    hub, eraser = daemon.hub, daemon.eraser
    assert hub is not None and eraser is not None

    async def restrict(command: p.Command) -> dict[str, Any]:
        category = Category(str(command.args["category"]))
        await hub.set_restricted(category, bool(command.args.get("on", True)), actor="register")
        return {"restricted": sorted(c.value for c in hub.restricted)}

    async def erase(command: p.Command) -> dict[str, Any]:
        scope, target = str(command.args.get("scope", "all")), str(command.args.get("target", ""))
        return await eraser.request(scope, target, requested_by="register")

    async def member_keys(command: p.Command) -> dict[str, Any]:
        members = command.args.get("member_keys")
        if not isinstance(members, list):
            raise ValueError("member_keys needs a list of member keys")
        path = daemon.config.state_path / "members.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(members, indent=2))
        tmp.replace(path)
        for driver in daemon.drivers:
            setter = getattr(driver, "set_recipients", None)
            if setter is not None:
                setter([str(m["recipient"]) for m in members])
        return {"members": len(members)}

    return {
        "restrict": restrict,
        "erase": erase,
        "member_keys": member_keys,
    }
