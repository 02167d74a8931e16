"""What scripts/install checks before placing the operator's release root and updater.toml (updater/installcheck.py):
a real TUF root made the way ``kotihub-register release init`` makes one, and the ways it can be wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from cloud_sync.register import tufrepo
from updater import installcheck
from updater.cli import main


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[tufrepo.Repository, Path]:
    keys_dir = tmp_path_factory.mktemp("keys")
    public = {role: tufrepo.generate_key(keys_dir / f"{role}.pem") for role in tufrepo.ROLES}
    signers = {role: tufrepo.load_signer(keys_dir / f"{role}.pem") for role in tufrepo.ROLES}
    repository = tufrepo.Repository(tmp_path_factory.mktemp("repo"))
    repository.create(
        signers["root"],
        public,
        targets_signer=signers["targets"],
        snapshot_signer=signers["snapshot"],
        timestamp_signer=signers["timestamp"],
    )
    return repository, keys_dir


def root_file(repo: tuple[tufrepo.Repository, Path]) -> Path:
    return repo[0].metadata_dir / "1.root.json"


def test_a_root_signed_by_its_own_key_is_accepted(repo: tuple[tufrepo.Repository, Path]) -> None:
    summary = installcheck.check_root(root_file(repo))
    assert (summary.version, summary.threshold, summary.keys) == (1, 1, 1)
    assert not summary.expired
    assert "TUF root version 1" in summary.text() and "valid" in summary.text()


def test_a_root_whose_signed_part_was_changed_is_refused(repo: tuple[tufrepo.Repository, Path], tmp_path: Path) -> None:
    doc = json.loads(root_file(repo).read_bytes())
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a longer life, without the root key's say
    tampered = tmp_path / "root.json"
    tampered.write_text(json.dumps(doc))
    with pytest.raises(installcheck.BadInstallFile, match="not a release root the updater can trust"):
        installcheck.check_root(tampered)


def test_a_root_signed_by_a_key_it_does_not_name_is_refused(
    repo: tuple[tufrepo.Repository, Path], tmp_path: Path
) -> None:
    root = Metadata[Root].from_bytes(root_file(repo).read_bytes())
    root.signatures.clear()
    root.sign(tufrepo.load_signer(repo[1] / "targets.pem"))  # a real key of the repository, but not a root key
    other = tmp_path / "root.json"
    other.write_bytes(root.to_bytes())
    with pytest.raises(installcheck.BadInstallFile):
        installcheck.check_root(other)


@pytest.mark.parametrize("name", ["timestamp.json", "garbage"])
def test_what_is_not_root_metadata_is_refused(repo: tuple[tufrepo.Repository, Path], tmp_path: Path, name: str) -> None:
    path = repo[0].metadata_dir / name if name != "garbage" else tmp_path / "garbage.json"
    if name == "garbage":
        path.write_bytes(b"\x00{not json")
    with pytest.raises(installcheck.BadInstallFile):
        installcheck.check_root(path)
    with pytest.raises(installcheck.BadInstallFile, match="cannot read"):
        installcheck.check_root(tmp_path / "missing.json")


def test_an_expired_root_is_accepted_and_said(repo: tuple[tufrepo.Repository, Path], tmp_path: Path) -> None:
    """An old installation image's root: TUF walks from it to the register's newest, so it is a valid anchor."""
    root = Metadata[Root].from_bytes(root_file(repo).read_bytes())
    root.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    root.signatures.clear()
    root.sign(tufrepo.load_signer(repo[1] / "root.pem"))
    old = tmp_path / "root.json"
    old.write_bytes(root.to_bytes())
    summary = installcheck.check_root(old)
    assert summary.expired and "EXPIRED" in summary.text()


def test_updater_settings_go_through_the_updaters_schema(tmp_path: Path) -> None:
    good = tmp_path / "updater.toml"
    good.write_text('trusted_root = "/etc/kotihub/root-2026.json"\nhealth_window_s = 240.0\n')
    assert installcheck.check_config(good).trusted_root == "/etc/kotihub/root-2026.json"
    for body, why in [
        ("health_window_s = 0\n", "health_window_s"),
        ("helth_window_s = 10.0\n", "helth_window_s"),
        ('keep_releases = "3"\n', "keep_releases"),
        ("[broken\n", "updater.toml"),
        ('trusted_root = "release-root.json"\n', "absolute"),
    ]:
        good.write_text(body)
        with pytest.raises(installcheck.BadInstallFile, match=why):
            installcheck.check_config(good)
    with pytest.raises(installcheck.BadInstallFile, match="no updater settings"):
        installcheck.check_config(tmp_path / "missing.toml")


def test_the_cli_exits_1_with_the_reason_and_prints_the_roots_place(
    repo: tuple[tufrepo.Repository, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-root", str(root_file(repo))]) == 0
    assert "TUF root version 1" in capsys.readouterr().err
    settings = tmp_path / "updater.toml"
    settings.write_text("")
    assert main(["check-config", str(settings)]) == 0
    assert capsys.readouterr().out == "/etc/kotihub/release-root.json\n"  # the default, where the install puts it
    settings.write_text("nonsense = 1\n")
    assert main(["check-config", str(settings)]) == 1
    assert capsys.readouterr().err.startswith("refused: ")
