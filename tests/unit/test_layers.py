"""The layering of docs/architecture.md, checked on every import (lazy and TYPE_CHECKING ones too):

    drivers → gateway.model ← gateway → cloud_sync.uplink → cloud_sync.protocol ← cloud_sync.register

and the same split for third-party libraries: hub code imports only the base and `hub` (or `miio`) extras, the
register only the base and `register` (or `postgres`) extras, the wire protocol only the base. What crosses today is
listed in EXCEPTIONS with the reason; each is to be removed (the test also fails when one no longer happens, so the
list only shrinks).
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("gateway", "drivers", "cloud_sync", "household", "updater")

_HUB = (
    "gateway",
    "drivers.base",
    "cloud_sync.protocol",
    "cloud_sync.uplink",
    "cloud_sync.heartbeat",
    "cloud_sync.enroll",
    "cloud_sync.clitools",
    "cloud_sync.privatefile",
    "cloud_sync.memberlist",
    "cloud_sync.receipts",
)
"""What the hub's package may import of ours."""

# Who may import whom (first-party), by module prefix. The most specific source prefix applies.
ALLOWED: dict[str, tuple[str, ...]] = {
    # The vocabulary everyone shares; it depends on nothing of ours.
    "gateway.model": ("gateway.model", "gateway.errors"),
    "gateway.errors": (),
    # One retry policy and one supervisor for every long-lived task, drivers and uplink included.
    "gateway.backoff": (),
    "gateway.supervisor": ("gateway.backoff", "gateway.errors"),
    # Drivers speak protocols and hand model values to the hub's port; they see nothing else of the hub.
    # (drivers.memory, .lru and .ranges are the drivers' shared kit: persisted memory, bounded tables, plausibility.)
    "drivers": (
        "drivers.base",
        "drivers.memory",
        "drivers.lru",
        "drivers.ranges",
        "gateway.model",
        "gateway.errors",
        "gateway.backoff",
        "gateway.supervisor",
    ),
    # The hub: its own package, the driver registry and port (not a driver's insides), and its side of the wire.
    # (`from drivers import REGISTRY, driver_class` is the registry; see crossings()).
    "gateway": _HUB,
    # The kotihub CLI also hosts a member's own commands (`kotihub member …`), which are the household's package.
    # ... and `kotihub update status`, which reads the updater's state (updater.cli, updater.config).
    "gateway.cli": (*_HUB, "household", "updater.cli", "updater.config"),
    # The wire contract depends on nothing of ours, so both ends can share it; so do the CLIs' helpers.
    "cloud_sync.protocol": (),
    "cloud_sync.clitools": (),
    "cloud_sync.privatefile": (),
    "cloud_sync.certs": (),
    # The release contract (bundle manifest, rollout messages): release tool, register and updater share it.
    "cloud_sync.releases": (),
    # The hub's updater, its own process: the release contract, the daemon's control socket (health), and the
    # file helper; nothing else of the hub, so a broken daemon cannot take the updater down with it.
    # (gateway.config: a pushed configuration is checked with `kotihub config check`'s own schema.)
    "updater": (
        "updater",
        "cloud_sync.releases",
        "cloud_sync.privatefile",
        "gateway.control",
        "gateway.config",
        "gateway.errors",
    ),
    # Also wire contract: the signed member list and the signed erasure receipts, read by hub, register and household.
    "cloud_sync.memberlist": ("cloud_sync.protocol",),
    "cloud_sync.receipts": ("cloud_sync.protocol",),
    "cloud_sync": ("cloud_sync",),
    # The hub's side of the wire: the protocol and the store's outbox.
    "cloud_sync.uplink": (
        "cloud_sync.protocol",
        "gateway.store",
        "gateway.model",
        "gateway.errors",
        "gateway.config",
        "gateway.backoff",
        "gateway.supervisor",
        "cloud_sync.heartbeat",
        "cloud_sync.enroll",
    ),
    # The hub's health heartbeat, sent by the uplink: reads the store's lanes and the hub's driver states.
    "cloud_sync.heartbeat": (
        "cloud_sync.protocol",
        "gateway.store",
        "gateway.hub",
        "gateway.model",
        "gateway.errors",
    ),
    "cloud_sync.enroll": (
        "cloud_sync.protocol",
        "cloud_sync.memberlist",
        "gateway.errors",
        "gateway.members",
        "cloud_sync.certs",
        "gateway.backoff",
    ),
    # The register sees the hub only through the protocol.
    "cloud_sync.register": (
        "cloud_sync.register",
        "cloud_sync.protocol",
        "cloud_sync.memberlist",
        "cloud_sync.receipts",
        "cloud_sync.clitools",
        "cloud_sync.privatefile",
        "cloud_sync.certs",
        "cloud_sync.releases",
    ),
    # The household is a third party: its own keys and tools, the wire contract, nothing of hub or register.
    "household": ("household", "cloud_sync.protocol", "cloud_sync.memberlist", "cloud_sync.privatefile"),
}

# Crossings that exist today: (importing module, imported module prefix) → why, and what removes it.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("gateway.cli", "drivers.camera.clipcrypt"): "clip crypto belongs with the store (issue 15, item 1)",
    ("gateway.store.driver_state", "drivers.lru"): "a generic bounded LRU; belongs in a shared utility module",
    ("gateway.spool", "drivers.camera.spool"): "spool housekeeping belongs with the store (issue 15, item 1)",
    ("gateway.demo", "cloud_sync.register"): "the demo is a tool, not the daemon's package (issue 15, item 7)",
    ("cloud_sync.register.config_push", "gateway.config"): (
        "remote configuration is checked with `kotihub config check`'s schema before it leaves the register; "
        "moves when the config schema becomes a shared module"
    ),
    ("cloud_sync.register.config_push", "gateway.errors"): "the schema's ConfigError (as above)",
    ("gateway.demo_alarm", "cloud_sync.register"): "the demo's alarm narrator is a tool too (issue 15, item 7)",
    ("gateway.demo", "drivers.ble.driver"): "the demo is a tool (issue 15, item 7)",
    ("gateway.demo", "drivers.ble.replay"): "the demo is a tool (issue 15, item 7)",
    ("gateway.demo", "drivers.miio.simulator"): "the demo is a tool (issue 15, item 7)",
    ("gateway.demo", "drivers.mqtt.broker"): "the demo is a tool (issue 15, item 7)",
    ("gateway.demo", "drivers.mqtt.simulator"): "the demo is a tool (issue 15, item 7)",
    ("gateway.demo", "household.edit"): "the demo plays the household's member too (issue 15, item 7)",
    ("gateway.demo", "household.keys"): "the demo plays the household's member too (issue 15, item 7)",
}

# Which extras each side may use besides the base install_requires.
SIDES: dict[str, tuple[str, ...]] = {"hub": ("hub", "miio"), "register": ("register", "postgres"), "protocol": ()}
# A module whose third-party imports need both sides: the demo runs a hub and a register in one process.
BOTH_SIDES = ("gateway.demo", "gateway.demo_alarm")


def modules() -> Iterator[tuple[str, Path]]:
    for package in FIRST_PARTY:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(path: Path) -> set[str]:
    """Every module named by an import in the file, including ``from x import y`` as ``x.y`` and ``x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_for(module: str) -> tuple[str, ...]:
    prefix = max((p for p in ALLOWED if under(module, p)), key=len)
    return ALLOWED[prefix]


def own_driver(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "drivers" and len(parts) > 2 else None


def crossings() -> set[tuple[str, str]]:
    """(module, imported) pairs that no rule allows, the imported name cut to the EXCEPTIONS prefix if one fits."""
    found: set[tuple[str, str]] = set()
    for module, path in modules():
        allowed = rule_for(module)
        mine = own_driver(module)
        for name in imports(path):
            if name.split(".")[0] not in FIRST_PARTY or name in FIRST_PARTY or under(name, module):
                continue  # not ours, a bare package (`from cloud_sync import protocol` names both), or itself
            if any(under(name, a) for a in allowed) or (mine is not None and under(name, mine)):
                continue
            if module.startswith("gateway") and name in ("drivers.REGISTRY", "drivers.driver_class"):
                continue  # the registry, by name
            prefix = next((p for (m, p) in EXCEPTIONS if m == module and under(name, p)), name)
            found.add((module, prefix))
    return found


def test_no_layer_is_crossed_beyond_the_listed_exceptions() -> None:
    found = crossings()
    unexpected = sorted(found - set(EXCEPTIONS))
    assert unexpected == [], "a layer is crossed (see docs/architecture.md, 'Layers'): " + repr(unexpected)
    # A removed crossing leaves the list too, so that it only shrinks.
    assert sorted(set(EXCEPTIONS) - found) == []


def test_the_check_sees_a_crossing() -> None:
    """The rules refuse what the architecture forbids (the check is not vacuous)."""
    assert not any(under("cloud_sync.register.app", a) for a in rule_for("gateway.hub"))
    assert not any(under("gateway.store", a) for a in rule_for("drivers.mqtt.driver"))
    assert not any(under("gateway.model", a) for a in rule_for("cloud_sync.register.ingest"))
    assert not any(under("drivers.ble.common", a) for a in rule_for("drivers.mqtt.driver"))
    assert rule_for("cloud_sync.protocol") == ()


def test_the_layers_line_in_the_docs_is_the_one_checked_here() -> None:
    line = next(line.strip() for line in (__doc__ or "").splitlines() if "→" in line)
    assert line in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")


def _distributions(extras: tuple[str, ...]) -> set[str]:
    """The distributions the base install and ``extras`` bring, with what they need in turn (normalised names)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def reqs(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]

    todo = reqs(cfg["options"]["install_requires"])
    for extra in extras:
        todo += reqs(cfg["options.extras_require"][extra])
    seen: set[str] = set()
    while todo:
        req = Requirement(todo.pop())
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # not installed here: nothing to follow
            todo += importlib.metadata.requires(req.name) or []
    return seen


def _side(module: str) -> str | None:
    if any(
        under(module, m)
        for m in (
            "cloud_sync.protocol",
            "cloud_sync.clitools",
            "cloud_sync.memberlist",
            "cloud_sync.receipts",
            "cloud_sync.releases",
        )
    ):
        return "protocol"  # shared by both sides: the base install only
    if under(module, "cloud_sync.register"):
        return "register"
    if module in BOTH_SIDES:
        return None
    return "hub"


def test_each_side_imports_only_its_own_extras() -> None:
    """A hub install gets no FastAPI/uvicorn and a register install no bleak/zeroconf/aiomqtt: each module's
    third-party imports must come with the base install and its own side's extras."""
    owners = importlib.metadata.packages_distributions()
    allowed = {side: _distributions(extras) for side, extras in SIDES.items()}
    wrong: list[str] = []
    for module, path in modules():
        side = _side(module)
        if side is None:
            continue
        for name in imports(path):
            top = name.split(".")[0]
            if top in FIRST_PARTY or top in sys.stdlib_module_names or top == "__future__":
                continue
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(top, [top])}
            if not dists & allowed[side]:
                wrong.append(f"{module} imports {top} ({', '.join(sorted(dists))}), not in the {side} install")
    assert sorted(set(wrong)) == []
    assert "fastapi" not in allowed["hub"] and "uvicorn" not in allowed["hub"]
    assert not {"bleak", "zeroconf", "aiomqtt"} & allowed["register"]
