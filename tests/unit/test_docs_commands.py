"""Every command shown in the technician's, operator's and developer's guides is one the CLI accepts as written.

The guides are read by people typing at a customer's hub or a register host; a renamed option must fail here,
not there. Commands are taken from the fenced code blocks (``kotihub …``, ``kotihub-register …``, also behind
``sudo``/``runuser`` and the virtualenv path, and in ``ExecStart=`` lines) and parsed by the real argparse parsers.
Options given to scripts/install and scripts/uninstall must be ones those scripts handle.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from cloud_sync.register.cli import _parser as register_parser
from gateway.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
GUIDES = [REPO / "docs" / name for name in ("technician.md", "operator.md", "developer.md", "members.md")]
PREFIX = re.compile(r"^(?:ExecStart=|sudo |runuser -u \S+ -- |/opt/kotihub/venv/bin/|\.venv/bin/)+")


def code_lines(path: Path) -> list[str]:
    """Lines of the shell and ini blocks, with continuations joined and trailing comments dropped (``text`` blocks
    are diagrams, ``python`` and ``toml`` blocks are not commands)."""
    lines: list[str] = []
    fenced = wanted = False
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            fenced = not fenced
            wanted = fenced and raw[3:].strip() in ("", "sh", "ini")
            continue
        if not wanted:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(re.sub(r"\s+#\s.*$", "", line))
    return lines


def commands(program: str) -> list[tuple[str, list[str]]]:
    found = []
    for guide in GUIDES:
        for line in code_lines(guide):
            words = shlex.split(PREFIX.sub("", line))
            if words and words[0] == program:
                # "[--ttl 600]" marks an optional part; it is still typed as shown.
                found.append((f"{guide.name}: {line}", [w.strip("[]") for w in words[1:] if w.strip("[]")]))
    return found


def parse(parser: argparse.ArgumentParser, where: str, argv: list[str]) -> None:
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"the CLI refuses a command from the guide ({exc.code}): {where}")


HUB_COMMANDS = commands("kotihub")
REGISTER_COMMANDS = commands("kotihub-register")


def test_the_guides_show_the_commands_they_are_about() -> None:
    hub = {argv[0] for _, argv in HUB_COMMANDS}
    register = {argv[0] for _, argv in REGISTER_COMMANDS}
    assert {"provision", "status", "devices", "discover", "config", "selftest", "erase", "export"} <= hub
    assert {"serve", "household", "member", "enroll-token", "api-token", "audit", "export", "retention"} <= register


@pytest.mark.parametrize(("where", "argv"), HUB_COMMANDS, ids=[w for w, _ in HUB_COMMANDS])
def test_hub_command_parses(where: str, argv: list[str]) -> None:
    parse(build_parser(), where, argv)


@pytest.mark.parametrize(("where", "argv"), REGISTER_COMMANDS, ids=[w for w, _ in REGISTER_COMMANDS])
def test_register_command_parses(where: str, argv: list[str]) -> None:
    parse(register_parser(), where, argv)


@pytest.mark.parametrize("script", ["install", "uninstall"])
def test_script_options_in_the_guides_exist(script: str) -> None:
    source = (REPO / "scripts" / script).read_text(encoding="utf-8")
    handled = set(re.findall(r"^\s+(--[a-z-]+)(?:=\*)?\)", source, re.MULTILINE))
    handled |= {alt for group in re.findall(r"^\s+([-a-z|]+)\)", source, re.MULTILINE) for alt in group.split("|")}
    used = {
        word
        for guide in GUIDES
        for line in code_lines(guide)
        if f"scripts/{script}" in line
        for word in shlex.split(line)
        if word.startswith("--")
    }
    assert used, f"the guides never show scripts/{script}"
    assert used <= handled, f"options the guides give scripts/{script} but it does not handle: {used - handled}"
