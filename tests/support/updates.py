"""Small real releases of this project for the updater's tests, and the daemon run as a service would run it.

``release_bundles`` (session) builds, once, bundles of the project's wheel with changed versions: a good one, one
whose daemon crashes at start, one whose selftest FAILs, one that hangs before it is ready. Each carries only the
project's wheel; the release virtualenvs take the dependencies from this test environment (``base_site``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sync.register import bundle
from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from tests.support.register import RunningRegister
from updater import config as updater_config

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("gateway", "drivers", "cloud_sync", "household", "updater", "setup.cfg", "pyproject.toml", "README.md")
BASE_VERSION = "0.1.0"

FLAWS: dict[str, tuple[str, str, str]] = {
    # A release whose daemon raises at once: systemd would see it exit.
    "crash": (
        "gateway/daemon.py",
        "    async def run(self) -> None:\n",
        '    async def run(self) -> None:\n        raise RuntimeError("this release cannot start")\n',
    ),
    # Starts and serves, but its selftest reports a FAIL.
    "selftest": (
        "gateway/selftest.py",
        "    results: list[dict[str, Any]] = []\n",
        '    results: list[dict[str, Any]] = [check("release", FAIL, "daemon.down")]\n',
    ),
    # Never gets as far as its control socket: neither crashes nor becomes ready.
    "hang": (
        "gateway/daemon.py",
        "    async def run(self) -> None:\n",
        "    async def run(self) -> None:\n        await asyncio.Event().wait()\n",
    ),
}
RELEASES = {"0.1.0": None, "0.2.0": None, "0.2.1": "crash", "0.2.2": "selftest", "0.2.3": "hang"}
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")


def build_release(work: Path, out: Path, version: str, flaw: str | None) -> Path:
    src = work / f"src-{version}"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, src / name)
    cfg = src / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(f"version = {BASE_VERSION}\n", f"version = {version}\n", 1))
    if flaw is not None:
        path, old, new = FLAWS[flaw]
        text = (src / path).read_text()
        assert old in text, f"the {flaw} patch no longer applies to {path}"
        (src / path).write_text(text.replace(old, new, 1))
    path, manifest = bundle.build(src, out, platform=None, with_dependencies=False)
    assert manifest.version == version
    return path


@pytest.fixture(scope="session")
def release_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("releases")
    return {v: build_release(work, work / "bundles", v, flaw) for v, flaw in RELEASES.items()}


@dataclass
class Hub:
    root: Path
    config: Path
    state: Path
    socket: Path
    hub_id: str
    updater_cfg: updater_config.UpdaterConfig


def provision_hub(tmp_path: Path, register: RunningRegister, mosquitto: MosquittoBroker, *, window_s: float) -> Hub:
    """A hub's configuration (broker, uplink to ``register`` with a 1 s heartbeat), enrolled with ``kotihub
    provision``, and the updater's configuration for it under ``tmp_path``."""
    household = register.create_household()
    register.add_member(household)
    st, run = tmp_path / "state", tmp_path / "run"
    config = tmp_path / "kotihub.toml"
    config.write_text(
        f'[hub]\nstate_dir = "{st}"\nruntime_dir = "{run}"\nlog_level = "info"\n'
        "[store]\ncommit_interval = 0.2\n"
        f'[drivers.mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nreconnect_min = 0.1\n'
        "reconnect_max = 0.5\n"
        f'[uplink]\nenabled = true\nregister_url = "{register.url}"\nbackoff_initial = 0.05\nbackoff_max = 0.5\n'
        "command_poll_wait = 1.0\nheartbeat_interval = 1.0\n"
    )
    token, code = register.enroll_token(household), register.pairing_code(household)
    assert code is not None
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "provision", "--config", str(config), "--register", register.url,
         "--token", token, "--ca-file", str(register.ca_file), "--pairing-code", code],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cfg = updater_config.UpdaterConfig(
        root=str(tmp_path / "opt"),
        state_dir=str(tmp_path / "updater"),
        trusted_root=str(tmp_path / "release-root.json"),
        register_url=register.url,
        hub_config=str(config),
        hub_state_dir=str(st),
        control_socket=str(run / "control.sock"),
        platform=PLATFORM,
        python=sys.executable,
        health_window_s=window_s,
    )
    return Hub(tmp_path / "opt", config, st, run / "control.sock", HubIdentity(st).hub_id(), cfg)


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


class PowerCut(BaseException):
    """The updater's process ends here (as at a power cut); BaseException, so no ``except Exception`` eats it."""


class DaemonService:
    """What systemd does for kotihub.service, for the updater's tests: run ``current/venv/bin/kotihub run``."""

    def __init__(self, root: Path, config: Path, log: Path, *, command: list[str] | None = None) -> None:
        self.root, self.config, self.log = root, config, log
        self.command = command
        """Instead of ``current/venv/bin/kotihub``: e.g. this checkout's daemon, for hubs without releases."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[str] = []
        self.cut_power_after_restart = False

    def restart(self) -> None:
        self.stop()
        if self.command is not None:
            cmd, cwd = [*self.command, "run", "--config", str(self.config)], REPO
        else:
            exe = self.root / "current" / "venv" / "bin" / "kotihub"
            self.starts.append(Path(exe.resolve()).parents[2].name)
            cmd, cwd = [str(exe), "run", "--config", str(self.config)], self.root
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stderr=log)
        if self.cut_power_after_restart:
            self.cut_power_after_restart = False
            raise PowerCut

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def daemon_service(tmp_path: Path) -> Iterator[DaemonService]:
    service = DaemonService(tmp_path / "opt", tmp_path / "kotihub.toml", tmp_path / "daemon.log")
    yield service
    if service.proc is not None and service.proc.poll() is None:
        service.proc.kill()
        service.proc.wait()
