"""The hub's updater fetches releases through TUF from the real register over TLS on loopback, and refuses each
attack TUF exists for: a tampered bundle, expired metadata, a rollback (of metadata, and of the release), a freeze
(a stale timestamp) and metadata signed by a key the root does not name."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from cloud_sync.register import tufrepo
from tests.support.register import RunningRegister
from tests.support.releases import PLATFORM, ReleaseRepo, fake_bundle
from updater.errors import Refused
from updater.fetch import ReleaseSource, hub_session


@pytest.fixture
def repo(register: RunningRegister, tmp_path: Path) -> ReleaseRepo:
    return ReleaseRepo(register, tmp_path / "keys")


@pytest.fixture
def source(register: RunningRegister, repo: ReleaseRepo, tmp_path: Path) -> ReleaseSource:
    hub = register.enroll(state_dir=tmp_path / "hub")
    return ReleaseSource(register.url, tmp_path / "updater", repo.root_file, hub_session(hub.cert, hub.key, hub.ca))


def test_a_signed_bundle_is_fetched_verified(repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "out", "1.1.0")
    repo.publish(bundle)
    got = source.fetch("1.1.0", PLATFORM)
    assert got.read_bytes() == bundle.read_bytes()
    with pytest.raises(Refused, match="not a signed release"):
        source.fetch("9.9.9", PLATFORM)


def test_a_tampered_bundle_is_refused(repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path) -> None:
    name = repo.publish(fake_bundle(tmp_path / "out", "1.1.0"))
    served = repo.target_file(name)
    data = bytearray(served.read_bytes())
    data[-1] ^= 1  # one bit of the last wheel, same length
    served.write_bytes(bytes(data))
    with pytest.raises(Refused, match="LengthOrHashMismatchError"):
        source.fetch("1.1.0", PLATFORM)
    assert not list(source.download_dir.iterdir())  # nothing unverified is left where the installer looks


def test_expired_targets_metadata_is_refused(repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path) -> None:
    repo.publish(fake_bundle(tmp_path / "out", "1.1.0"), targets_valid_for=timedelta(seconds=-1))
    with pytest.raises(Refused, match="ExpiredMetadataError"):
        source.fetch("1.1.0", PLATFORM)


def test_a_frozen_repository_is_refused(repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path) -> None:
    """A freeze replays yesterday's (validly signed) metadata forever; the timestamp's short expiry exposes it."""
    repo.publish(fake_bundle(tmp_path / "out", "1.1.0"))
    repo.repo.sign_timestamp(repo.signers["timestamp"], valid_for=timedelta(seconds=-1))
    with pytest.raises(Refused, match="ExpiredMetadataError"):
        source.fetch("1.1.0", PLATFORM)


def test_a_metadata_rollback_is_refused(repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path) -> None:
    repo.publish(fake_bundle(tmp_path / "out", "1.1.0"))
    old = tmp_path / "old-metadata"
    shutil.copytree(repo.repo.metadata_dir, old)
    repo.publish(fake_bundle(tmp_path / "out", "1.2.0"))
    source.fetch("1.2.0", PLATFORM)  # the hub now trusts the newer metadata
    # The attacker (or a restored backup of the register) serves the older, validly signed metadata again.
    shutil.rmtree(repo.repo.metadata_dir)
    shutil.copytree(old, repo.repo.metadata_dir)
    with pytest.raises(Refused, match="BadVersionNumberError"):
        source.fetch("1.1.0", PLATFORM)


def test_metadata_signed_by_a_key_not_in_the_root_is_refused(
    repo: ReleaseRepo, source: ReleaseSource, tmp_path: Path
) -> None:
    repo.publish(fake_bundle(tmp_path / "out", "1.1.0"))
    # Whoever holds the register's disk but not the timestamp key signs a timestamp of their own.
    intruder = tufrepo.generate_key(tmp_path / "intruder.pem")
    assert intruder.keyid not in repo.repo.root().signed.keys
    repo.repo.sign_timestamp(tufrepo.load_signer(tmp_path / "intruder.pem"))
    with pytest.raises(Refused, match="UnsignedMetadataError"):
        source.fetch("1.1.0", PLATFORM)
    # ...and a new target signed with a foreign targets key fares no better.
    repo.repo.sign_timestamp(repo.signers["timestamp"])
    source.fetch("1.1.0", PLATFORM)
    signers = dict(repo.signers)
    signers["targets"] = CryptoSigner.generate_ed25519()
    repo.signers = signers
    repo.publish(fake_bundle(tmp_path / "out", "1.2.0"))
    with pytest.raises(Refused, match="UnsignedMetadataError"):
        source.fetch("1.2.0", PLATFORM)


def test_the_release_cli_makes_keys_a_repository_and_publishes(
    register: RunningRegister, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kotihub-register release keys/init/add/timestamp` end to end; a hub then fetches what was published."""
    from cloud_sync.register.cli import main

    state = str(register.settings.state_dir)
    keys = tmp_path / "keys"
    assert main(["--state", state, "release", "keys", str(keys)]) == 0
    assert sorted(p.name for p in keys.iterdir()) == ["root.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in keys.iterdir())
    assert main(["--state", state, "release", "init", "--keys", str(keys)]) == 0
    assert main(["--state", state, "release", "init", "--keys", str(keys)]) != 0  # never over an existing one
    bundle = fake_bundle(tmp_path / "out", "3.0.0")
    assert main(["--state", state, "release", "add", str(bundle), "--keys", str(keys)]) == 0
    assert main(["--state", state, "release", "timestamp", "--keys", str(keys)]) == 0
    capsys.readouterr()
    repo = tufrepo.Repository(register.settings.state_dir / "releases")
    assert repo.timestamp().signed.version == 3  # init, add, timestamp
    hub = register.enroll(state_dir=tmp_path / "hub")
    source = ReleaseSource(
        register.url, tmp_path / "updater", repo.metadata_dir / "1.root.json", hub_session(hub.cert, hub.key, hub.ca)
    )
    assert source.fetch("3.0.0", PLATFORM).read_bytes() == bundle.read_bytes()
    actions = {e["action"] for e in register.reg.audit_entries()}
    assert {"release.init", "release.add"} <= actions
