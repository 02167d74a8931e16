"""The release contract shared by the release tool, the register and the hub's updater (docs/updates.md).

A *bundle* is one uncompressed tar, ``kotihub-<version>-<platform>.tar``, holding ``manifest.json`` (a
:class:`Manifest`) and ``wheels/*.whl``: the project's wheel and a wheel of every dependency for the target
platform, so a hub installs it with ``pip install --no-index`` and never reaches PyPI. Bundles are TUF targets; the
target's ``custom`` field carries the same version and platform so the hub can choose before downloading.

The rollout messages (:class:`Assignment`, :class:`Outcome`) travel as JSON under ``/v1/releases``.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

MANIFEST_NAME: Final = "manifest.json"
WHEELS_DIR: Final = "wheels"
MAX_MANIFEST_BYTES: Final = 64 * 1024
MAX_BUNDLE_MEMBERS: Final = 1000
HUB_PLATFORM: Final = "manylinux_2_36_aarch64"
"""Raspberry Pi OS bookworm 64-bit: glibc 2.36 on aarch64."""

_VERSION_RE: Final = r"^[0-9]+(\.[0-9]+){0,3}\Z"
Version = Annotated[str, msgspec.Meta(pattern=_VERSION_RE, max_length=64)]
"""Plain dotted release numbers only: they order without ambiguity (no pre-releases, no local parts)."""
Platform = Annotated[str, msgspec.Meta(pattern="^[a-z0-9_]{1,64}\\Z")]
_Wheel = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_.+-]{1,200}\\.whl\\Z")]
_Detail = Annotated[str, msgspec.Meta(max_length=512, pattern="^[^\x00-\x1f\x7f]*\\Z")]


class Manifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    version: Version
    platform: Platform
    python: Annotated[str, msgspec.Meta(pattern="^cp3[0-9]{1,2}\\Z")]
    project_wheel: _Wheel
    wheels: Annotated[list[_Wheel], msgspec.Meta(min_length=1, max_length=500)]
    extras: Annotated[
        list[Annotated[str, msgspec.Meta(pattern="^[a-z0-9_]{1,32}\\Z")]], msgspec.Meta(max_length=8)
    ] = []


class Assignment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the register wants this hub to run: ``None`` means "stay where you are"."""

    version: Version | None
    reason: Literal["rollout", "pin", "hold", "none", "paused"]


OutcomeKind = Literal["confirmed", "rolled_back", "refused", "install_failed"]


class Outcome(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What became of an assignment on the hub."""

    version: Version
    outcome: OutcomeKind
    detail: _Detail = ""


def version_key(version: str) -> tuple[int, ...]:
    """Orders release numbers: ``1.10`` after ``1.9``; ``1.0`` equals ``1.0.0``."""
    if not re.match(_VERSION_RE, version):
        raise ValueError(f"not a release number: {version!r}")
    parts = [int(x) for x in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def bundle_name(version: str, platform: str) -> str:
    return f"kotihub-{version}-{platform}.tar"


class BundleError(ValueError):
    """Not a release bundle, or its members differ from its manifest."""


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, checked against the bundle's members: exactly the wheels it lists, nothing else."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_BUNDLE_MEMBERS:
                raise BundleError(f"bundle has {len(members)} members")
            names = {m.name for m in members if m.isfile()}
            if len(names) != len(members):
                raise BundleError("bundle holds something other than regular files")
            info = tar.getmember(MANIFEST_NAME)
            if info.size > MAX_MANIFEST_BYTES:
                raise BundleError("bundle manifest is too large")
            f = tar.extractfile(info)
            if f is None:
                raise BundleError("bundle manifest is not a file")
            manifest = msgspec.json.decode(f.read(), type=Manifest)
    except (tarfile.TarError, KeyError, OSError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BundleError(f"not a release bundle: {exc}") from exc
    wanted = {MANIFEST_NAME, *(f"{WHEELS_DIR}/{w}" for w in manifest.wheels)}
    if names != wanted or manifest.project_wheel not in manifest.wheels:
        raise BundleError("bundle members differ from its manifest")
    return manifest
