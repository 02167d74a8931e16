"""Every command the register can queue is one a hub handles (issue 15, item 4).

The register queues any of ``protocol.COMMAND_KINDS`` (``Registry.queue_command``; the household API a subset of
them); the hub answers a kind it has no handler for with "this hub cannot …". The hub's handlers are read from the
table in ``gateway/register_commands.py`` that the daemon gives the uplink. Kinds that drift today are listed with
the reason; the test fails when a new one appears and when a listed one gets a handler (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

from cloud_sync import protocol

REPO = Path(__file__).resolve().parents[2]

# Kind -> why no hub handles it yet. Empty: ``config`` left the protocol (remote configuration is the updater's pull,
# docs/architecture.md); a new kind must come with its hub handler or be listed here with the reason.
NOT_HANDLED_YET: dict[str, str] = {}


def hub_command_kinds() -> set[str]:
    """String keys of the dict that ``gateway/register_commands.py``'s ``table()`` returns: the handlers the daemon
    gives the uplink."""
    tree = ast.parse((REPO / "gateway" / "register_commands.py").read_text(encoding="utf-8"))
    table = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "table")
    kinds: set[str] = set()
    for node in table.body:
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
            kinds |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return kinds


def test_the_hub_handles_every_command_the_register_can_queue() -> None:
    handled = hub_command_kinds()
    assert handled, "could not find the hub's command table (gateway/register_commands.py): update hub_command_kinds()"
    unhandled = set(protocol.COMMAND_KINDS) - handled
    assert unhandled == set(NOT_HANDLED_YET), (
        f"queued by the register but handled by no hub: {sorted(unhandled - set(NOT_HANDLED_YET))}; "
        f"handled now, remove from NOT_HANDLED_YET: {sorted(set(NOT_HANDLED_YET) - unhandled)}"
    )
    assert handled <= set(protocol.COMMAND_KINDS), "the hub handles a kind the protocol does not have"


def register_queued_kinds() -> set[str]:
    """Every kind the register's own code queues: a constant kind passed to ``queue_command`` anywhere under
    cloud_sync/register, and the kinds its API lets a household queue (a tuple named ``API_COMMAND_KINDS``)."""
    kinds: set[str] = set()
    for path in sorted((REPO / "cloud_sync" / "register").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "queue_command":
                kind = node.args[1] if len(node.args) > 1 else None
                if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                    kinds.add(kind.value)
            elif (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "API_COMMAND_KINDS" for t in node.targets)
                and isinstance(node.value, ast.Tuple)
            ):
                kinds |= {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return kinds


def test_every_kind_the_register_queues_is_in_the_protocol_and_handled_by_the_hub() -> None:
    queued = register_queued_kinds()
    assert {"erase", "restrict"} <= queued, "could not find the register's queue_command calls: update the scan"
    assert queued <= set(protocol.COMMAND_KINDS), "the register queues a kind the protocol does not define"
    assert queued - hub_command_kinds() <= set(NOT_HANDLED_YET), (
        f"the register queues kinds no hub handles: {sorted(queued - hub_command_kinds() - set(NOT_HANDLED_YET))}"
    )


def test_every_command_the_hub_handles_says_what_it_touches() -> None:
    """A kind missing from ``TOUCHES`` would run alone (safe, but an export would hold it up again); a stray entry
    is a command that no longer exists."""
    from gateway.register_commands import TOUCHES

    assert set(TOUCHES) == hub_command_kinds()
    assert all(TOUCHES.values()), "an empty set is read as everything: name what the kind touches"
