"""Building a release bundle (docs/updates.md): the project's wheel, a wheel of every dependency for the hub's
platform, and a manifest, in one tar.

The dependency set is what ``kotihub[<extras>]`` needs, resolved for the target platform with
``--only-binary=:all:`` so that a hub never compiles anything. Three of python-miio 0.5.12's requirements are
left out on purpose, because none has an aarch64 (or any) wheel on PyPI and python-miio imports each only lazily,
in code kotihub never runs: ``netifaces`` (``miio.updater``, its firmware-push server), ``android_backup``
(``miio.extract_tokens``) and ``micloud`` (``miio.cloud``'s token download). So python-miio's wheel goes in
without its dependencies and its other requirements are resolved on their own (:data:`NO_DEPS`).
"""

from __future__ import annotations

import configparser
import email.parser
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cloud_sync.releases import MANIFEST_NAME, WHEELS_DIR, Manifest, bundle_name

NO_DEPS: Final[dict[str, frozenset[str]]] = {
    "python-miio": frozenset({"netifaces", "android-backup", "micloud"}),
}
"""Distributions installed without their declared dependencies, and which of those are dropped (see above).
tests/unit/test_bundle.py checks that the miio modules the driver loads import none of them."""


class BuildError(Exception):
    """The bundle cannot be built as asked (pip failed, a wheel is missing for the platform)."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(project: Path, extras: Iterable[str]) -> list[str]:
    """``install_requires`` plus the extras' requirements, from the project's setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(project / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def platform_tags(platform: str) -> list[str]:
    """``manylinux_2_36_aarch64`` and every older glibc tag it runs (down to manylinux2014 = 2.17): pip takes
    ``--platform`` literally, and most wheels are tagged for an older glibc than the hub's."""
    m = re.fullmatch(r"manylinux_2_([0-9]+)_(\w+)", platform)
    if m is None:
        return [platform]
    newest, arch = int(m.group(1)), m.group(2)
    return [*(f"manylinux_2_{v}_{arch}" for v in range(newest, 16, -1)), f"manylinux2014_{arch}"]


def _platform_args(platform: str | None, python: str) -> list[str]:
    if platform is None:
        return ["--only-binary=:all:"]
    tags = [arg for tag in platform_tags(platform) for arg in ("--platform", tag)]
    return [
        "--only-binary=:all:", *tags, "--python-version", python.removeprefix("cp"),
        "--implementation", "cp", "--abi", python, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"pip {args[0]} failed: {done.stderr.strip()[-1500:]}")
    return done


def split_requirements(reqs: list[str], wheel_dir: Path, platform: str | None, python: str) -> list[str]:
    """Replaces each :data:`NO_DEPS` requirement by its own wheel (downloaded into ``wheel_dir`` without
    dependencies) and adds that wheel's requirements minus the dropped ones."""
    from packaging.requirements import Requirement  # pip's own dependency; only the release tool needs it

    out: list[str] = []
    for line in reqs:
        req = Requirement(line)
        dropped = NO_DEPS.get(_norm(req.name))
        if dropped is None:
            out.append(line)
            continue
        _pip("download", "--no-deps", "--quiet", "-d", str(wheel_dir), *_platform_args(platform, python), line)
        wheel = next(w for w in wheel_dir.glob("*.whl") if _norm(w.name.split("-")[0]) == _norm(req.name))
        with zipfile.ZipFile(wheel) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
        for dep in meta.get_all("Requires-Dist") or []:
            d = Requirement(dep)
            if _norm(d.name) in dropped or (d.marker is not None and not d.marker.evaluate({"extra": ""})):
                continue
            out.append(str(d))
    return out


def resolve_check(project: Path, extras: Iterable[str], platform: str, python: str = "cp311") -> list[str]:
    """Resolves the bundle's dependency set for ``platform`` without installing it (``pip install --dry-run``,
    binary wheels only); returns the ``name==version`` list or raises :class:`BuildError` naming what is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        reqs = split_requirements(requirements(project, extras), Path(tmp), platform, python)
        report = Path(tmp) / "report.json"
        _pip(
            "install", "--dry-run", "--quiet", "--ignore-installed", "--target", str(Path(tmp) / "t"),
            "--report", str(report), *_platform_args(platform, python), *reqs,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
        names = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs]
        miss = [w.name for w in Path(tmp).glob("*.whl")]
        return sorted(names + [m.split("-")[0] + "==" + m.split("-")[1] for m in miss])


def build(
    project: Path,
    out_dir: Path,
    *,
    platform: str | None,
    python: str = "cp311",
    extras: tuple[str, ...] = ("hub",),
    with_dependencies: bool = True,
) -> tuple[Path, Manifest]:
    """Builds the bundle into ``out_dir``; ``platform`` None means this machine's (for development).

    ``with_dependencies=False`` makes a bundle of the project's wheel alone, for tests and development machines
    whose release virtualenvs take the dependencies from an existing site (``updater.install``'s ``base_site``);
    it is never what a hub gets."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / WHEELS_DIR
        wheels.mkdir()
        _pip("wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(wheels), str(project))
        [project_wheel] = [w.name for w in wheels.glob("kotihub-*.whl")]
        version = project_wheel.split("-")[1]
        if with_dependencies:
            reqs = split_requirements(requirements(project, extras), wheels, platform, python)
            _pip("download", "--quiet", "-d", str(wheels), *_platform_args(platform, python), *reqs)
        tag = platform or _host_platform()
        manifest = Manifest(
            version=version,
            platform=tag,
            python=python,
            project_wheel=project_wheel,
            wheels=sorted(w.name for w in wheels.glob("*.whl")),
            extras=list(extras),
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / bundle_name(version, tag)
        with tarfile.open(out, "w:") as tar:
            data = json.dumps(
                {f: getattr(manifest, f) for f in manifest.__struct_fields__}, indent=2, sort_keys=True
            ).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for name in manifest.wheels:
                tar.add(wheels / name, arcname=f"{WHEELS_DIR}/{name}")
    return out, manifest


def _host_platform() -> str:
    import sysconfig

    return re.sub(r"[^a-z0-9_]", "_", sysconfig.get_platform().lower())
