"""Installing a verified bundle next to the running release, and the atomic switch between releases.

Layout under the updater's ``root``::

    releases/<version>/venv     one virtualenv per release, made from the bundle's wheels only
    releases/<version>/manifest.json
    releases/<version>/.complete       written last: a release directory without it is half-made
    current  -> releases/<version>     what kotihub.service runs (ExecStart=/opt/kotihub/current/venv/bin/kotihub)
    previous -> releases/<version>     where a rollback goes

A virtualenv cannot be moved after pip has written it, so it is made in place and marked complete last; a power cut
during the install leaves a directory without the mark, which is never switched to and is made afresh next time.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Final

from cloud_sync.releases import WHEELS_DIR, Manifest
from updater.errors import InstallFailed

log = logging.getLogger(__name__)

PIP_TIMEOUT_S: Final = 900.0
COMPLETE: Final = ".complete"


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.current = root / "current"
        self.previous = root / "previous"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def complete(self, version: str) -> bool:
        return (self.release_dir(version) / COMPLETE).is_file()

    def version_of(self, link: Path) -> str | None:
        """The release a symlink points at, or None if there is no such link."""
        try:
            return Path(os.readlink(link)).name
        except FileNotFoundError:
            return None

    def switch(self, link: Path, version: str) -> None:
        """Points ``link`` at ``releases/<version>`` atomically: a new symlink renamed over the old one, then the
        directory fsynced, so after a power cut the link is the old one or the new one, never missing."""
        target = self.release_dir(version)
        if not self.complete(version):
            raise InstallFailed(f"release {version} is not installed at {target}")
        tmp = link.with_name(f".{link.name}.new")
        tmp.unlink(missing_ok=True)
        # Relative, so the tree can be inspected or moved as a whole (a technician's copy of the card).
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
        fd = os.open(link.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self, keep: int, also_keep: set[str]) -> None:
        """Removes all but the ``keep`` newest others, never current or previous."""
        if not self.releases.is_dir():
            return
        pinned = {v for v in (self.version_of(self.current), self.version_of(self.previous)) if v} | also_keep
        dirs = sorted((d for d in self.releases.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
        kept = 0
        for d in dirs:
            if d.name in pinned:
                continue
            elif kept < keep - len(pinned):
                kept += 1
            else:
                shutil.rmtree(d, ignore_errors=True)


def install(bundle: Path, manifest: Manifest, layout: Layout, *, python: str, base_site: Path | None = None) -> Path:
    """Makes ``releases/<version>/venv`` from the bundle's wheels (``pip --no-index``: no PyPI on the hub).

    The wheel set is the release's lock: every wheel is installed ``--no-deps``, so pip neither adds nor swaps a
    dependency, and a dependency the release leaves out on purpose (netifaces, see docs/updates.md) stays out.
    ``base_site`` adds a site-packages directory to the new virtualenv's path; it is for development machines and
    tests, whose bundles carry only the project's wheel.
    """
    final = layout.release_dir(manifest.version)
    if layout.complete(manifest.version):
        log.info("release %s is already installed", manifest.version)
        return final
    shutil.rmtree(final, ignore_errors=True)  # a half-made one, cut off by a crash or power cut
    final.mkdir(parents=True)
    wheels = final / WHEELS_DIR
    with tarfile.open(bundle, "r:") as tar:
        # "data" refuses absolute paths, links out of the tree, devices and setuid bits.
        tar.extractall(final, filter="data")
    venv = final / "venv"
    # Without pip of its own: the updater's pip installs into it (``--python``), which saves the ensurepip step.
    _run([python, "-m", "venv", "--without-pip", str(venv)], "create the virtualenv")
    if base_site is not None:
        site = next((venv / "lib").glob("python3*/site-packages"))
        (site / "_kotihub_base.pth").write_text(f"{base_site}\n")
    _run(
        [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
            "--no-index", "--no-deps",
            "--disable-pip-version-check", "--no-cache-dir",
            *(str(wheels / w) for w in manifest.wheels),
        ],
        "install the release's wheels",
    )  # fmt: skip
    shutil.rmtree(wheels)
    _sync_tree(final)
    # Written last: a release without it is half-made and never switched to.
    (final / COMPLETE).write_text(manifest.version + "\n")
    _sync_tree(final, only_dir=True)
    return final


def _sync_tree(path: Path, *, only_dir: bool = False) -> None:
    """The installed files reach the card before the marker does (``sync``; an install is rare enough)."""
    if not only_dir:
        os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"could not {what}: {exc}") from exc
    if done.returncode != 0:
        raise InstallFailed(f"could not {what}: {done.stderr.strip()[-500:]}")
