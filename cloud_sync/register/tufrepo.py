"""The release repository: TUF metadata (root, targets, snapshot, timestamp) and the bundles they sign.

Layout under ``repo_dir`` (what the register serves under ``/v1/releases/tuf``, or any static HTTPS host)::

    metadata/1.root.json, 2.root.json ...   every root, so a hub can walk key rotations
    metadata/root.json                      the newest root, for a new hub's installation image
    metadata/N.targets.json, N.snapshot.json, timestamp.json   (consistent snapshots)
    targets/<sha256>.kotihub-<version>-<platform>.tar

Keys are Ed25519, one per role, each in its own PEM file (0600). Which is online where is in docs/updates.md: the
root key never is (it only signs a new root, on an offline machine); the targets key signs on the release
engineer's machine; snapshot and timestamp keys sit on the register so it can re-sign the timestamp before it
expires (``kotihub-register release timestamp``, from a timer) without being able to name a new bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from cloud_sync.privatefile import write_private
from cloud_sync.register.errors import RegisterError
from cloud_sync.releases import Manifest, bundle_name

ROLES: Final = ("root", "targets", "snapshot", "timestamp")
EXPIRY: Final = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
"""How long each role's metadata is valid. A hub that sees no fresh timestamp within a day refuses to update
(a freeze attack shows as an expired timestamp); the register re-signs it every few hours."""

_SERIALIZER: Final = JSONSerializer(compact=False)


class RepositoryError(RegisterError):
    """The repository on disk is not what the operation needs (missing, already there, a release number reused)."""

    status = 409
    code = "release_repository"


def generate_key(path: Path) -> SSlibKey:
    """A new Ed25519 key in ``path`` (PEM, 0600); returns its public half."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(path, pem)
    return SSlibKey.from_crypto(key.public_key())


def load_signer(path: Path) -> CryptoSigner:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RepositoryError(f"{path} is not an Ed25519 private key")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def _expires(role: str, now: datetime | None, valid_for: timedelta | None) -> datetime:
    start = now or datetime.now(UTC)
    return (start + (valid_for if valid_for is not None else EXPIRY[role])).replace(microsecond=0)


class Repository:
    def __init__(self, repo_dir: Path) -> None:
        self.dir = repo_dir
        self.metadata_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"

    # ---- reading -------------------------------------------------------------------------------------------
    def _read(self, name: str) -> Metadata[Any]:
        path = self.metadata_dir / name
        if not path.exists():
            raise RepositoryError(f"no {name} in {self.metadata_dir}: run `kotihub-register release init` first")
        return Metadata.from_file(str(path))

    def root(self) -> Metadata[Root]:
        return self._read("root.json")

    def timestamp(self) -> Metadata[Timestamp]:
        return self._read("timestamp.json")

    def snapshot(self) -> Metadata[Snapshot]:
        return self._read(f"{self.timestamp().signed.snapshot_meta.version}.snapshot.json")

    def targets(self) -> Metadata[Targets]:
        return self._read(f"{self.snapshot().signed.meta['targets.json'].version}.targets.json")

    def releases(self) -> list[dict[str, Any]]:
        """The signed bundles: version, platform, length, expiry of the targets metadata."""
        targets = self.targets()
        out = []
        for name, target in sorted(targets.signed.targets.items()):
            custom = target.custom
            out.append(
                {
                    "target": name,
                    "version": custom.get("version"),
                    "platform": custom.get("platform"),
                    "length": target.length,
                }
            )
        return out

    # ---- writing -------------------------------------------------------------------------------------------
    def _write(self, md: Metadata[Any], name: str) -> None:
        """Atomically (temp file, fsync, rename): a hub fetching mid-publish sees the old file or the new one."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        path = self.metadata_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(md.to_bytes(_SERIALIZER))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)

    def create(
        self,
        root_signer: Signer,
        keys: dict[str, SSlibKey],
        *,
        targets_signer: Signer,
        snapshot_signer: Signer,
        timestamp_signer: Signer,
        now: datetime | None = None,
    ) -> None:
        """A new repository: root 1 names one key per role (threshold 1); empty targets, snapshot, timestamp."""
        if (self.metadata_dir / "1.root.json").exists():
            raise RepositoryError(f"{self.metadata_dir} already holds a repository")
        root = Metadata(Root(expires=_expires("root", now, None), consistent_snapshot=True))
        for role in ROLES:
            root.signed.add_key(keys[role], role)
        root.sign(root_signer)
        self._write(root, "1.root.json")
        self._write(root, "root.json")
        targets = Metadata(Targets(expires=_expires("targets", now, None)))
        targets.sign(targets_signer)
        self._write(targets, "1.targets.json")
        self._publish_snapshot(1, snapshot_signer, timestamp_signer, now=now)

    def add_bundle(
        self,
        bundle: Path,
        manifest: Manifest,
        *,
        targets_signer: Signer,
        snapshot_signer: Signer,
        timestamp_signer: Signer,
        now: datetime | None = None,
        targets_valid_for: timedelta | None = None,
    ) -> str:
        """Signs ``bundle`` as a target and publishes new targets, snapshot and timestamp; returns the target name."""
        name = bundle_name(manifest.version, manifest.platform)
        if bundle.name != name:
            raise RepositoryError(f"the bundle file is {bundle.name}, its manifest says {name}")
        targets = self.targets()
        if name in targets.signed.targets:
            raise RepositoryError(f"{name} is already published: a release number is used once")
        target = TargetFile.from_file(name, str(bundle), ["sha256"])
        target.unrecognized_fields["custom"] = {"version": manifest.version, "platform": manifest.platform}
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        digest = target.hashes["sha256"]
        dest = self.targets_dir / f"{digest}.{name}"
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(bundle, tmp)
        tmp.replace(dest)
        targets.signed.targets[name] = target
        targets.signed.version += 1
        targets.signed.expires = _expires("targets", now, targets_valid_for)
        targets.signatures.clear()
        targets.sign(targets_signer)
        self._write(targets, f"{targets.signed.version}.targets.json")
        self._publish_snapshot(targets.signed.version, snapshot_signer, timestamp_signer, now=now)
        return name

    def _publish_snapshot(
        self, targets_version: int, snapshot_signer: Signer, timestamp_signer: Signer, *, now: datetime | None
    ) -> None:
        try:
            previous = self.snapshot().signed.version
        except RepositoryError:
            previous = 0
        snapshot = Metadata(Snapshot(version=previous + 1, expires=_expires("snapshot", now, None)))
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets_version)
        snapshot.sign(snapshot_signer)
        self._write(snapshot, f"{snapshot.signed.version}.snapshot.json")
        self.sign_timestamp(timestamp_signer, now=now)

    def sign_timestamp(
        self, timestamp_signer: Signer, *, now: datetime | None = None, valid_for: timedelta | None = None
    ) -> Metadata[Timestamp]:
        """A new timestamp over the newest snapshot (the register's timer calls this; a freeze shows without it)."""
        snapshots = sorted(int(p.name.split(".")[0]) for p in self.metadata_dir.glob("*.snapshot.json"))
        if not snapshots:
            raise RepositoryError("no snapshot to timestamp")
        try:
            version = self.timestamp().signed.version + 1
        except RepositoryError:
            version = 1
        ts = Metadata(Timestamp(version=version, expires=_expires("timestamp", now, valid_for)))
        ts.signed.snapshot_meta = MetaFile(version=snapshots[-1])
        ts.sign(timestamp_signer)
        self._write(ts, "timestamp.json")
        return ts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
