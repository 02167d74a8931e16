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
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("gateway", "drivers", "cloud_sync", "household", "kotihub_tools", "updater")

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
    # A bounded table (LRU) that drivers and the store's driver memory both use; it depends on nothing of ours.
    "gateway.lru": (),
    # Drivers speak protocols and hand model values to the hub's port; they see nothing else of the hub.
    # (drivers.memory and .ranges are the drivers' shared kit: persisted memory, plausibility.)
    "drivers": (
        "drivers.base",
        "drivers.memory",
        "drivers.ranges",
        "gateway.lru",
        "gateway.model",
        "gateway.errors",
        "gateway.backoff",
        "gateway.supervisor",
    ),
    # The store is a leaf of the hub: its parts (keys, readings, outbox, records, deletion) and the hub's vocabulary.
    "gateway.store": ("gateway.store", "gateway.crypto", "gateway.errors", "gateway.model", "gateway.lru"),
    # The hub: its own package, the driver registry and port (not a driver's insides), and its side of the wire.
    # (`from drivers import REGISTRY, driver_class` is the registry; see crossings()).
    "gateway": _HUB,
    # The kotihub CLI also hosts a member's own commands (`kotihub member …`), which are the household's package,
    # `kotihub demo`, a tool it loads only when that command runs, and `kotihub update status`, which reads the
    # updater's state (updater.cli, updater.config).
    "gateway.cli": (*_HUB, "household", "kotihub_tools.demo", "updater.cli", "updater.config"),
    # Tools (the demo, the simulators, a private broker) run every part together and may import anything.
    "kotihub_tools": FIRST_PARTY,
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
    # The hub's side of the wire: the protocol and the store's outbox; its parts (lanes, clips, commands, records)
    # share cloud_sync.uplink.link and .client.
    "cloud_sync.uplink": (
        "cloud_sync.uplink",
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
    # The uplink's HTTP client is the bottom of its package: no loop, no policy.
    "cloud_sync.uplink.client": ("cloud_sync.protocol", "gateway.errors", "gateway.store"),
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
        "cloud_sync.privatefile",
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
    # The register's routers are leaves: they use its domain modules and shared dependencies, never the composition
    # roots (app, server, cli) that include them.
    "cloud_sync.register.routes": (
        "cloud_sync.register.routes",
        "cloud_sync.register.auth",
        "cloud_sync.register.budget",
        "cloud_sync.register.clips",
        "cloud_sync.register.errors",
        "cloud_sync.register.export",
        "cloud_sync.register.ingest",
        "cloud_sync.register.jsonshape",
        "cloud_sync.register.lanegate",
        "cloud_sync.register.memberlog",
        "cloud_sync.register.metrics",
        "cloud_sync.register.openapi",
        "cloud_sync.register.ratelimit",
        "cloud_sync.register.registry",
        "cloud_sync.register.retention",
        "cloud_sync.register.settings",
        "cloud_sync.register.wakeups",
        "cloud_sync.register.watching",
        "cloud_sync.protocol",
    ),
    # The household is a third party: its own keys and tools, the wire contract, nothing of hub or register.
    "household": ("household", "cloud_sync.protocol", "cloud_sync.memberlist", "cloud_sync.privatefile"),
}

# Crossings that exist today: (importing module, imported module prefix) → why, and what removes it.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("cloud_sync.register.config_push", "gateway.config"): (
        "remote configuration is checked with `kotihub config check`'s schema before it leaves the register; "
        "moves when the config schema becomes a shared module"
    ),
    ("cloud_sync.register.config_push", "gateway.errors"): "the schema's ConfigError (as above)",
}

# Which extras each side may use besides the base install_requires.
SIDES: dict[str, tuple[str, ...]] = {"hub": ("hub", "miio"), "register": ("register", "postgres"), "protocol": ()}
# Modules whose third-party imports need both sides: the tools (the demo runs a hub and a register in one process).
BOTH_SIDES = ("kotihub_tools",)


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
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= named
            if not all(_is_module(n) for n in named):  # `from pkg import mod` imports mod, not pkg's own names
                found.add(node.module)
    return found


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
    assert not any(under("kotihub_tools.demo", a) for a in rule_for("gateway.daemon"))
    assert not any(under("kotihub_tools.simulators.mqtt", a) for a in rule_for("drivers.mqtt.driver"))
    assert not any(under("cloud_sync.register.app", a) for a in rule_for("cloud_sync.register.routes.clips"))


_DECRYPT_AND_LIST_MODULES = """
import sys
from gateway import cli
code = cli.main(["clip", "decrypt", "--identity", sys.argv[1], "--out", sys.argv[2], sys.argv[3]])
print(code, *sorted(m for m in sys.modules if m.split(".")[0] == "drivers"))
"""


def test_clip_decrypt_loads_no_driver(tmp_path: Path) -> None:
    """``kotihub clip decrypt`` (what a member's phone does) needs the store's clip crypto, not a device driver: run
    for real on a sealed clip, it loads no module of ``drivers``."""
    from gateway.store.clips import encrypt_clip
    from tests.support.camera import make_member

    member = make_member(tmp_path / "household", "me")
    _, sealed = encrypt_clip(
        io.BytesIO(b"video" * 1000),
        spool=tmp_path / "spool",
        clip_id="c1",
        recipients=[member.recipient],
        device_id="camera:x",
        started=1.0,
        duration_s=1.0,
        reason="manual",
    )
    out = tmp_path / "clip.ts"
    done = subprocess.run(
        [sys.executable, "-c", _DECRYPT_AND_LIST_MODULES, str(member.identity_file), str(out), str(sealed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.read_bytes() == b"video" * 1000
    assert done.stdout.split("\n")[-2].split() == ["0"], "the decrypt command loaded a driver module"


FACADE_ONLY: dict[str, str] = {
    "gateway.privacy": "gateway.store",
    "gateway.retention": "gateway.store",
    "cloud_sync.uplink": "gateway.store",
}
"""Modules (by prefix) that use a package through its facade only: its public names, none of its parts (schema,
keys, ...)."""


def test_privacy_retention_and_uplink_use_the_stores_public_operations() -> None:
    checked = 0
    for module, path in modules():
        for prefix, package in FACADE_ONLY.items():
            if under(module, prefix):
                checked += 1
                parts = sorted(n for n in imports(path) if under(n, package) and n != package and _is_module(n))
                assert parts == [], f"{module} reaches into {package}'s parts: {parts}"
    assert checked >= len(FACADE_ONLY)
    # The check sees a part when one is imported.
    assert _is_module("gateway.store.schema") and not _is_module("gateway.store.Store")


def test_only_the_uplink_package_runs_its_service() -> None:
    """The uplink's parts are loops and helpers the service composes; none of them reaches back up to it."""
    for module, path in modules():
        if under(module, "cloud_sync.uplink") and module not in ("cloud_sync.uplink", "cloud_sync.uplink.service"):
            assert not any(under(n, "cloud_sync.uplink.service") for n in imports(path)), module


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
    if any(under(module, m) for m in BOTH_SIDES):
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
