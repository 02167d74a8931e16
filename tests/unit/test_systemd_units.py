"""The shipped systemd units: sandbox exposure at most 2.0 (scored by systemd-analyze), `verify` clean, and the
settings the daemon's code depends on (paths, credential name, notify/watchdog) agree with that code.

Runs scripts/check-units for real; systemd-analyze needs no running systemd for these two commands.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cloud_sync.register.cli import _parser as register_parser
from gateway import crypto
from gateway.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "scripts" / "check-units"
HUB = REPO / "systemd" / "kotihub.service"
REGISTER = REPO / "systemd" / "kotihub-register.service"


def check_units(*args: str | Path) -> tuple[int, dict[str, dict[str, object]]]:
    proc = subprocess.run(
        [sys.executable, str(CHECK), "--json", *map(str, args)], capture_output=True, text=True, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def directives(unit: Path) -> dict[str, list[str]]:
    """Key → values in file order (systemd allows repeating a key, e.g. SystemCallFilter=)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def documented_score(unit: Path) -> float:
    match = re.search(r"^#.*?(\d+\.\d) OK\b", unit.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{unit.name} does not state its measured exposure in a comment"
    return float(match.group(1))


def test_shipped_units_pass_and_their_comments_state_the_measured_score() -> None:
    rc, report = check_units(HUB, REGISTER)
    assert rc == 0, report
    for unit in (HUB, REGISTER):
        entry = report[unit.name]
        assert entry["verify"] == [], entry
        assert isinstance(entry["exposure"], float)
        assert entry["exposure"] <= 2.0
        # The number in the unit's header comment is the one systemd-analyze gives today.
        assert entry["exposure"] == documented_score(unit)
    assert report[HUB.name]["exposure"] == pytest.approx(1.3)
    assert report[REGISTER.name]["exposure"] == pytest.approx(1.4)  # 1.2 before setpriority (serve --alarm-port)


def test_a_weakened_unit_is_scored_above_the_threshold_and_fails(tmp_path: Path) -> None:
    # The hub unit with its sandbox stripped: the gate must notice, not just the happy path pass.
    kept = ("Description", "Type", "NotifyAccess", "ExecStart", "User", "Group", "WantedBy")
    weak = tmp_path / "kotihub-weak.service"
    lines = [
        line
        for line in HUB.read_text(encoding="utf-8").splitlines()
        if line.startswith("[") or line.partition("=")[0] in kept
    ]
    weak.write_text("\n".join(lines) + "\n")
    rc, report = check_units(weak)
    assert rc == 1
    entry = report[weak.name]
    assert isinstance(entry["exposure"], float)
    assert entry["exposure"] > 2.0
    assert entry["ok"] is False


def test_verify_rejects_an_unknown_directive(tmp_path: Path) -> None:
    bad = tmp_path / "kotihub-typo.service"
    bad.write_text(HUB.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHomes=yes"))
    rc, report = check_units(bad)
    assert rc == 1
    messages = report[bad.name]["verify"]
    assert isinstance(messages, list)
    assert any("ProtectHomes" in m for m in messages), messages


def test_hub_unit_matches_what_the_daemon_expects() -> None:
    d = directives(HUB)
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert "StartLimitIntervalSec" in d
    assert "StartLimitBurst" in d
    # The daemon pings every WatchdogSec/2 and withholds pings once the writer has stalled this long; a watchdog
    # shorter than that stall window would kill a daemon that is merely slow.
    watchdog = d["WatchdogSec"][0]
    assert watchdog.endswith("s")
    assert float(watchdog[:-1]) >= 30.0

    assert d["User"] == ["kotihub"]
    assert d["SupplementaryGroups"] == ["bluetooth"]
    assert d["StateDirectoryMode"] == ["0700"]
    assert d["RuntimeDirectoryMode"] == ["0750"]
    # The paths the sandbox leaves writable are the ones the shipped config points at.
    shipped = tomllib.loads((REPO / "config" / "kotihub.toml").read_text(encoding="utf-8"))
    assert "/var/lib/" + d["StateDirectory"][0] == shipped["hub"]["state_dir"]
    assert "/run/" + d["RuntimeDirectory"][0] == shipped["hub"]["runtime_dir"]
    assert d["ConfigurationDirectory"] == ["kotihub"]
    # gateway.crypto looks for exactly this credential name under $CREDENTIALS_DIRECTORY.
    assert d["LoadCredential"] == [f"{crypto.CREDENTIAL_NAME}:/etc/credstore/{crypto.CREDENTIAL_NAME}"]

    exec_start = d["ExecStart"][0].split()
    assert exec_start[0] == "/opt/kotihub/current/venv/bin/kotihub"  # the updater's switchable link
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == "run"
    assert args.config == Path("/etc/kotihub/kotihub.toml")

    families = d["RestrictAddressFamilies"][0].split()
    assert set(families) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert d["CapabilityBoundingSet"] == [""]
    assert d["MemoryDenyWriteExecute"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"]


def test_register_unit_runs_the_installed_cli_with_valid_arguments() -> None:
    exec_start = directives(REGISTER)["ExecStart"][0].split()
    assert exec_start[0] == "/opt/kotihub/venv/bin/kotihub-register"
    args = register_parser().parse_args(exec_start[1:])
    assert args.cmd == "serve"
    assert args.state == Path("/var/lib/kotihub-register")
