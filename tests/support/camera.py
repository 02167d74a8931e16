"""Fixtures for the camera tests: a household member's age identity and a private RAM-backed buffer directory."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from pyrage import x25519

from drivers.base import DriverContext
from gateway.store.clipspool import ClipSpool


class Member(msgspec.Struct, frozen=True):
    identity_file: Path
    recipient: str


def spool_context(spool: Path, recipients: list[str]) -> DriverContext:
    """What the daemon hands a camera driver: the clip spool, sealing to ``recipients`` as the list is at each clip
    (change the list in place to change the household's members)."""
    return DriverContext(clips=ClipSpool(spool, lambda: recipients))


def make_member(directory: Path, name: str) -> Member:
    identity = x25519.Identity.generate()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.agekey"
    path.write_text(f"# household member {name}\n{identity}\n")
    path.chmod(0o600)
    return Member(path, str(identity.to_public()))


@pytest.fixture
def member(tmp_path: Path) -> Member:
    """A household member: an identity file (household side only) and the public recipient the hub gets."""
    return make_member(tmp_path / "household", "member")


@pytest.fixture
def ram_dir() -> Iterator[Path]:
    """A fresh directory on /dev/shm (tmpfs), removed afterwards."""
    base = Path("/dev/shm") / f"kotihub-test-{uuid.uuid4().hex[:12]}"
    base.mkdir(mode=0o700)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
