"""What scripts/install checks before placing the operator's release root and updater.toml (updater/installcheck.py):
a real TUF root made the way ``kotihub-register release init`` makes one, and the ways it can be wrong."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
        ('trusted_root = "/etc/kotihub/../../tmp/root.json"\n', "'..'"),
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


def test_what_is_placed_is_exactly_what_was_checked_even_if_the_source_changes_after_the_check(
    repo: tuple[tufrepo.Repository, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a check and a later copy: both files are swapped for bad ones right after their check (as a
    local attacker or a careless sync would), and the placed files are still the checked bytes."""
    dest = tmp_path / "dest"
    root_src, settings_src = tmp_path / "root.json", tmp_path / "updater.toml"
    good_root = root_file(repo).read_bytes()
    good_settings = b'trusted_root = "/etc/kotihub/root-2026.json"\n'
    root_src.write_bytes(good_root)
    settings_src.write_bytes(good_settings)
    checked: list[bytes] = []
    real_root, real_config = installcheck.check_root_bytes, installcheck.check_config_bytes

    def root_then_swap(data: bytes, name: str) -> installcheck.RootSummary:
        summary = real_root(data, name)
        checked.append(data)
        root_src.write_bytes(good_root.replace(b'"version": 1', b'"version": 7', 1))  # unsigned change
        return summary

    def config_then_swap(data: bytes, name: str) -> Any:
        cfg = real_config(data, name)
        checked.append(data)
        settings_src.write_bytes(b'trusted_root = "/etc/passwd"\nhealth_window_s = -1\n')
        return cfg

    monkeypatch.setattr(installcheck, "check_root_bytes", root_then_swap)
    monkeypatch.setattr(installcheck, "check_config_bytes", config_then_swap)
    lines = installcheck.install_files(dest, release_root=root_src, updater_config=settings_src)

    placed_root, placed_settings = dest / "etc/kotihub/root-2026.json", dest / "etc/kotihub/updater.toml"
    assert checked == [good_settings, good_root]
    assert placed_root.read_bytes() == good_root and placed_settings.read_bytes() == good_settings
    assert stat.S_IMODE(placed_root.stat().st_mode) == stat.S_IMODE(placed_settings.stat().st_mode) == 0o644
    assert "placed /etc/kotihub/root-2026.json" in lines and "updater: /etc/kotihub/root-2026.json present" in lines
    assert not (dest / "etc/passwd").exists()
    # What the updater will load from there is what was checked: a trusted root.
    assert installcheck.check_root(placed_root).version == 1


def test_install_files_places_nothing_if_either_is_refused_and_nothing_new_when_run_again(
    repo: tuple[tufrepo.Repository, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    settings, bad_root = tmp_path / "updater.toml", tmp_path / "bad-root.json"
    settings.write_text("health_window_s = 240.0\n")
    bad_root.write_bytes(root_file(repo).read_bytes().replace(b'"version": 1', b'"version": 7', 1))
    args = ["install-files", "--dest", str(dest), "--updater-config", str(settings)]
    assert main([*args, "--release-root", str(bad_root)]) == 1
    assert f"refused: {bad_root} is not a release root" in capsys.readouterr().err
    assert not dest.exists()

    assert main([*args, "--release-root", str(root_file(repo))]) == 0
    out = capsys.readouterr().out
    assert "TUF root version 1" in out and "placed /etc/kotihub/release-root.json" in out
    placed = dest / "etc/kotihub/release-root.json"
    before = (placed.stat().st_mtime_ns, (dest / "etc/kotihub/updater.toml").stat().st_mtime_ns)
    assert main([*args, "--release-root", str(root_file(repo))]) == 0
    assert "/etc/kotihub/release-root.json: present, the same" in capsys.readouterr().out
    assert (placed.stat().st_mtime_ns, (dest / "etc/kotihub/updater.toml").stat().st_mtime_ns) == before
    assert sorted(p.name for p in placed.parent.iterdir()) == ["release-root.json", "updater.toml"]  # no temp left

    # Without new settings, the root goes where the installed ones say.
    (dest / "etc/kotihub/updater.toml").write_text('trusted_root = "/etc/kotihub/other.json"\n')
    assert main(["install-files", "--dest", str(dest), "--release-root", str(root_file(repo))]) == 0
    assert (dest / "etc/kotihub/other.json").read_bytes() == root_file(repo).read_bytes()


def test_place_replaces_a_link_or_a_wrong_mode_and_leaves_an_identical_file_alone(tmp_path: Path) -> None:
    target, elsewhere = tmp_path / "etc/release-root.json", tmp_path / "elsewhere.json"
    elsewhere.write_bytes(b"root")
    target.parent.mkdir()
    target.symlink_to(elsewhere)  # same bytes, but a link to a file someone else may control
    assert installcheck.place(b"root", target)
    assert not target.is_symlink() and target.read_bytes() == b"root"
    target.chmod(0o666)
    assert installcheck.place(b"root", target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not installcheck.place(b"root", target)
    assert elsewhere.read_bytes() == b"root"  # the link's target was never written through
