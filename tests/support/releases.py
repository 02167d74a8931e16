"""A real TUF release repository in a register's state directory, and tiny bundles to publish in it.

``ReleaseRepo`` holds the four role keys (files, as ``kotihub-register release keys`` makes them) and signs with
them; tests call its methods to publish, re-sign or break the repository the register serves over TLS.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from pathlib import Path

from cloud_sync.register import tufrepo
from cloud_sync.register.releases import repo_dir
from cloud_sync.releases import MANIFEST_NAME, WHEELS_DIR, Manifest, bundle_name, read_manifest
from tests.support.register import HubIdentity, RunningRegister

PLATFORM = "linux_x86_64"


class ReleaseRepo:
    def __init__(self, register: RunningRegister, keys_dir: Path) -> None:
        self.register = register
        self.repo = tufrepo.Repository(repo_dir(register.reg))
        self.keys_dir = keys_dir
        keys_dir.mkdir(parents=True, exist_ok=True)
        public = {role: tufrepo.generate_key(keys_dir / f"{role}.pem") for role in tufrepo.ROLES}
        self.signers = {role: tufrepo.load_signer(keys_dir / f"{role}.pem") for role in tufrepo.ROLES}
        self.repo.create(
            self.signers["root"],
            public,
            targets_signer=self.signers["targets"],
            snapshot_signer=self.signers["snapshot"],
            timestamp_signer=self.signers["timestamp"],
        )

    @property
    def root_file(self) -> Path:
        """What a hub's installation image carries as its trust anchor."""
        return self.repo.metadata_dir / "1.root.json"

    def publish(self, bundle: Path, *, targets_valid_for: timedelta | None = None) -> str:
        return self.repo.add_bundle(
            bundle,
            read_manifest(bundle),
            targets_signer=self.signers["targets"],
            snapshot_signer=self.signers["snapshot"],
            timestamp_signer=self.signers["timestamp"],
            targets_valid_for=targets_valid_for,
        )

    def target_file(self, name: str) -> Path:
        [path] = self.repo.targets_dir.glob(f"*.{name}")
        return path


def fake_bundle(out_dir: Path, version: str, platform: str = PLATFORM) -> Path:
    """A well-formed bundle whose one "wheel" is a few bytes: enough for everything but installing it."""
    wheel = f"kotihub-{version}-py3-none-any.whl"
    manifest = Manifest(version=version, platform=platform, python="cp311", project_wheel=wheel, wheels=[wheel])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / bundle_name(version, platform)
    with tarfile.open(path, "w:") as tar:
        for name, data in (
            (MANIFEST_NAME, json.dumps({f: getattr(manifest, f) for f in manifest.__struct_fields__}).encode()),
            (f"{WHEELS_DIR}/{wheel}", b"not really a wheel " + version.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def hub_files(hub: HubIdentity) -> tuple[Path, Path, Path]:
    return hub.cert, hub.key, hub.ca
