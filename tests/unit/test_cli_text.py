"""What people read from both CLIs: help on every option, --version, quiet on a closed pipe, sizes and times
written one way, and texts that say what the JSON says without Python's dict syntax."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_sync.register.cli import _parser as register_parser
from gateway import humanize, i18n
from gateway.cli import _retention_text, _status_text, build_parser

REPO = Path(__file__).resolve().parents[2]


def undocumented(parser: argparse.ArgumentParser, where: str = "") -> list[str]:
    """Options, arguments and sub-commands of ``parser`` (recursively) that have no help text."""
    missing: list[str] = []
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for command, child in action.choices.items():
                if command not in helped:
                    missing.append(f"{where}{command}")
                missing += undocumented(child, f"{where}{command} ")
        elif not action.help or (action.help == argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)):
            missing.append(f"{where}{name}")
    return missing


@pytest.mark.parametrize("parser", [build_parser, register_parser], ids=["kotihub", "kotihub-register"])
def test_every_option_argument_and_command_has_help_text(parser: type[argparse.ArgumentParser]) -> None:
    assert undocumented(parser()) == []


@pytest.mark.parametrize(
    ("module", "prog"), [("gateway.cli", "kotihub"), ("cloud_sync.register.cli", "kotihub-register")]
)
def test_version(module: str, prog: str) -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    run = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0
    assert run.stdout.split() == [prog, cfg["metadata"]["version"]]  # the installed package's version


def closed_pipe_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m ARGV`` with stdout into a pipe whose reader has gone, as `… | head -1` after head exits."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_the_commands_quietly(tmp_path: Path) -> None:
    state = str(tmp_path / "register")
    created = subprocess.run(
        [sys.executable, "-m", "cloud_sync.register.cli", "--state", state, "household", "create", "Virtanen"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert created.returncode == 0, created.stderr
    for argv in (
        ["gateway.cli", "config", "check", "config/kotihub.toml"],
        ["cloud_sync.register.cli", "--state", state, "household", "list"],
    ):
        run = closed_pipe_run(argv)
        assert "Traceback" not in run.stderr, argv
        assert "BrokenPipeError" not in run.stderr, argv
        assert run.returncode == 141, argv


def test_sizes_are_binary_units_everywhere() -> None:
    assert humanize.size(512) == "512 B"
    assert humanize.size(5 * 1024**3) == "5.0 GiB"
    assert humanize.size(1536 * 1024**2) == "1.5 GiB"
    status = {
        "hub": {"name": "h"},
        "uptime_s": 3600,
        "devices": {"online": 1, "offline": 0, "known": 1},
        "store": {"depth": {"alarm": 0}, "dead_letters": 0, "db_bytes": 3 * 1024**2, "free_bytes": 5 * 1024**3},
        "retention": {"days": 183, "horizon": None},
        "restricted": [],
        "drivers": {},
    }
    text = _status_text(status)
    assert "3.0 MiB used, 5.0 GiB free" in text
    # selftest says the same number the same way
    assert i18n.text("disk.ok", "en", free=humanize.size(5 * 1024**3)) == "disk: 5.0 GiB free"


def test_retention_shows_the_clock_as_it_is_now() -> None:
    """A run that waited for NTP, then the register confirmed the clock: not "confirmed" beside "waiting"."""
    summary = {
        "days": 183,
        "clock_trusted": True,
        "clock": "confirmed",
        "waiting": "waiting for NTP or the register",
        "last_run": 1_790_000_000.0,
        "due": {"days": 0, "readings": 0, "items": 0},
    }
    text = _retention_text(summary)
    assert "clock: trusted (confirmed)" in text
    assert "the clock is trusted now, so the next run goes ahead" in text
    waiting = _retention_text({**summary, "clock_trusted": False, "clock": "waiting for NTP or the register"})
    assert "clock: not trusted yet: waiting for NTP or the register" in waiting
    assert "(waiting for a trusted clock)" in waiting


def test_counts_and_times_are_words_not_python() -> None:
    assert humanize.counts({"readings": 3, "clip_files": 0}) == "3 readings, 0 clip files"
    assert humanize.counts({}) == "nothing"
    assert humanize.when(0) == "-"
    assert humanize.when(1_790_000_000) == "2026-09-21 14:13:20Z"


def test_ctrl_c_ends_a_command_without_a_traceback(tmp_path: Path) -> None:
    """`kotihub status` waiting on a daemon that never answers, then Ctrl-C: a word, exit status 130."""
    import signal
    import socket

    path = tmp_path / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "status", "--socket", str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conn, _ = server.accept()  # the command is now waiting for a reply that never comes
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        conn.close()
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip() == "interrupted"
