"""Small real releases of this project for the updater's tests, and the daemon run as a service would run it.

``release_bundles`` (session) builds, once, bundles of the project's wheel with changed versions: a good one, one
whose daemon crashes at start, one whose selftest FAILs, one that hangs before it is ready. Each carries only the
project's wheel; the release virtualenvs take the dependencies from this test environment (``base_site``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.register import bundle

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


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


class PowerCut(BaseException):
    """The updater's process ends here (as at a power cut); BaseException, so no ``except Exception`` eats it."""


class DaemonService:
    """What systemd does for kotihub.service, for the updater's tests: run ``current/venv/bin/kotihub run``."""

    def __init__(self, root: Path, config: Path, log: Path) -> None:
        self.root, self.config, self.log = root, config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[str] = []
        self.cut_power_after_restart = False

    def restart(self) -> None:
        self.stop()
        exe = self.root / "current" / "venv" / "bin" / "kotihub"
        self.starts.append(Path(exe.resolve()).parents[2].name)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(exe), "run", "--config", str(self.config)], cwd=self.root, stderr=log)
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
