"""Every command the register can queue is one a hub handles (issue 15, item 4).

The register queues any of ``protocol.COMMAND_KINDS`` (``Registry.queue_command``; the household API a subset of
them); the hub answers a kind it has no handler for with "this hub cannot …". The hub's handlers are read from the
``command_handlers`` it gives the uplink. Kinds that drift today are listed with the reason; the test fails when a
new one appears and when a listed one gets a handler (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

from cloud_sync import protocol

REPO = Path(__file__).resolve().parents[2]

NOT_HANDLED_YET = {
    "export": "households may queue it (docs/register.md) but the hub answers that it cannot export",
    "config": "in the protocol, queued by nobody and handled by no hub",
}


def hub_command_kinds() -> set[str]:
    """String keys of every dict given as ``command_handlers=…`` or assigned to a ``*command_handlers*`` name in the
    hub's package."""
    kinds: set[str] = set()
    for path in (REPO / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found: ast.expr | None = None
            if isinstance(node, ast.keyword) and node.arg == "command_handlers":
                found = node.value
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in targets]
                if any("command_handlers" in n.lower() for n in names):
                    found = node.value
            if isinstance(found, ast.Dict):
                kinds |= {k.value for k in found.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return kinds


def test_the_hub_handles_every_command_the_register_can_queue() -> None:
    handled = hub_command_kinds()
    assert handled, "could not find the hub's command_handlers (gateway/): update hub_command_kinds()"
    unhandled = set(protocol.COMMAND_KINDS) - handled
    assert unhandled == set(NOT_HANDLED_YET), (
        f"queued by the register but handled by no hub: {sorted(unhandled - set(NOT_HANDLED_YET))}; "
        f"handled now, remove from NOT_HANDLED_YET: {sorted(set(NOT_HANDLED_YET) - unhandled)}"
    )
    assert handled <= set(protocol.COMMAND_KINDS), "the hub handles a kind the protocol does not have"
