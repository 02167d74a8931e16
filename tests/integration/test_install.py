"""scripts/install and scripts/uninstall, run for real into a staging root (``--root``).

What staging does for real: the sysusers.d file and `systemd-sysusers --root` (the kotihub user in ROOT/etc/passwd),
the virtualenv with kotihub pip-installed in it, the config, the master key, the state directory, the units and
`systemctl --root enable`; on uninstall `systemctl --root disable`, `userdel/groupdel --root` and the purge.
What it skips (and the scripts say so): apt-get, `systemctl daemon-reload`, starting and stopping units.

The scripts run from a frozen copy of the checkout, so that other edits to the work tree while the test runs cannot
make the second install look like an upgrade.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COPIED = (
    "scripts",
    "config",
    "systemd",
    "docs",
    "gateway",
    "cloud_sync",
    "drivers",
    "household",
    "updater",
    "pyproject.toml",
    "setup.cfg",
)
KEY = "etc/credstore/kotihub.key"


def run(script: Path, *args: str | Path, check: bool = True, stdin: int | None = subprocess.DEVNULL) -> str:
    proc = subprocess.run(
        [str(script), *map(str, args)], capture_output=True, text=True, stdin=stdin, check=False, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr if check else f"rc={proc.returncode}\n{proc.stdout}{proc.stderr}"


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every path under root: (mode, uid, gid, mtime_ns, content hash or link target)."""
    out: dict[str, tuple[int, int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = ""
            out[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, content)
    return out


def staged_user(root: Path) -> list[str] | None:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "kotihub":
            return fields
    return None


def group_members(root: Path, group: str) -> list[str] | None:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return [m for m in fields[3].split(",") if m]
    return None


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("checkout")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, src / name)
    # README.md is the package's long description; a stand-in keeps the copy independent of README edits.
    (src / "README.md").write_text("kotihub\n")
    return src


@pytest.fixture(scope="module")
def installed(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("staged") / "root"
    output = run(checkout / "scripts/install", "--root", root, "--register")
    return root, output


def test_dry_run_changes_nothing_and_lists_the_steps(checkout: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    operators = tmp_path / "release-root.json"
    operators.write_text("{}")  # a dry run checks nothing with the updater it has not installed, and places nothing
    output = run(checkout / "scripts/install", "--root", root, "--register", "--dry-run", "--release-root", operators)
    assert not root.exists()
    assert f"would check {operators}, place it where the settings say (install-files)" in output
    assert "dry run: nothing is changed" in output
    assert "systemd-sysusers --root=" in output
    assert "creating " + str(root / KEY) in output
    assert "skipped (staging): apt-get install python3-venv ffmpeg bluez" in output
    assert "systemctl --root=" + str(root) + " --quiet enable kotihub-register.service" in output
    assert "would pip install kotihub[hub,register] and its dependencies" in output


def test_register_only_installs_no_hub(checkout: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    output = run(checkout / "scripts/install", "--root", root, "--register-only", "--postgres", "--dry-run")
    assert "kotihub-register.service" in output
    assert "kotihub.service" not in output
    assert "kotihub.key" not in output
    assert "sysusers" not in output
    assert "apt-get install python3-venv\n" in output
    assert "would pip install kotihub[register,postgres] and its dependencies" in output  # no hub libraries
    assert not root.exists()


def test_files_modes_user_and_units(installed: tuple[Path, str], checkout: Path) -> None:
    root, output = installed
    key = root / KEY
    info = key.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert len(key.read_bytes()) == 32
    assert stat.S_IMODE((root / "etc/credstore").stat().st_mode) == 0o700

    user = staged_user(root)
    assert user is not None
    assert user[5:] == ["/var/lib/kotihub", "/usr/sbin/nologin"]
    assert group_members(root, "bluetooth") == ["kotihub"]
    state = (root / "var/lib/kotihub").stat()
    assert stat.S_IMODE(state.st_mode) == 0o700
    assert (state.st_uid, state.st_gid) == (int(user[2]), int(user[3]))

    config = root / "etc/kotihub/kotihub.toml"
    assert config.read_bytes() == (checkout / "config/kotihub.toml").read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o644

    for unit in ("kotihub.service", "kotihub-register.service"):
        installed_unit = root / "etc/systemd/system" / unit
        assert installed_unit.read_bytes() == (checkout / "systemd" / unit).read_bytes()
        wants = root / "etc/systemd/system/multi-user.target.wants" / unit
        assert os.readlink(wants) == "/etc/systemd/system/" + unit
        # The command the unit runs exists in the staged tree and is executable.
        exec_start = next(
            line.split("=", 1)[1].split()[0]
            for line in installed_unit.read_text().splitlines()
            if line.startswith("ExecStart=")
        )
        assert os.access(root / exec_start.lstrip("/"), os.X_OK), exec_start

    # The updater's layout: `current` is this install as a release, and the updater's units are in place.
    version = next(
        line.split("=", 1)[1].strip()
        for line in (checkout / "setup.cfg").read_text().splitlines()
        if line.startswith("version =")
    )
    assert os.readlink(root / "opt/kotihub/current") == f"releases/{version}"
    assert os.access(root / "opt/kotihub/current/venv/bin/kotihub-updater", os.X_OK)
    assert (root / "opt/kotihub/releases" / version / ".complete").read_text() == version + "\n"
    for unit in ("kotihub-updater.service", "kotihub-updater.timer"):
        assert (root / "etc/systemd/system" / unit).read_bytes() == (checkout / "systemd" / unit).read_bytes()
    assert (root / "etc/systemd/system/timers.target.wants/kotihub-updater.timer").is_symlink()
    # The installed package works: the staged CLI validates the staged config.
    check = subprocess.run(
        [root / "opt/kotihub/venv/bin/kotihub", "config", "check", config], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    for doc in (checkout / "docs").glob("*.md"):  # the guides refer to each other: all of them
        assert (root / "opt/kotihub/share/doc" / doc.name).read_bytes() == doc.read_bytes(), doc.name
    assert "skipped (staging): systemctl start kotihub.service kotihub-register.service" in output


def test_second_run_changes_nothing(installed: tuple[Path, str], checkout: Path) -> None:
    root, _ = installed
    before = snapshot(root)
    key = (root / KEY).read_bytes()
    output = run(checkout / "scripts/install", "--root", root, "--register")
    assert snapshot(root) == before
    assert (root / KEY).read_bytes() == key
    assert "kotihub is up to date" in output
    assert "present, kept" in output
    assert "pip install" not in output


def test_an_edited_config_and_the_key_survive_a_reinstall(installed: tuple[Path, str], checkout: Path) -> None:
    root, _ = installed
    config = root / "etc/kotihub/kotihub.toml"
    edited = config.read_text().replace('name = "kotihub"', 'name = "sauna-hub"')
    assert edited != config.read_text()
    config.write_text(edited)
    key = (root / KEY).read_bytes()
    output = run(checkout / "scripts/install", "--root", root)
    assert config.read_text() == edited
    assert (root / KEY).read_bytes() == key
    assert "present and edited: kept" in output


def test_a_state_dir_left_by_an_old_uid_is_handed_back_whole(installed: tuple[Path, str], checkout: Path) -> None:
    # After uninstall (data kept) and reinstall the user can get a new uid. systemd fixes a state directory only
    # when its top level has the wrong owner, so the install must re-own everything below it as well.
    root, _ = installed
    state = root / "var/lib/kotihub"
    stale = state / "kotihub.db"
    stale.write_bytes(b"store")
    os.chown(stale, 4321, 4321)
    os.chown(state, 4321, 4321)
    run(checkout / "scripts/install", "--root", root)
    user = staged_user(root)
    assert user is not None
    owner = (int(user[2]), int(user[3]))
    assert (state.stat().st_uid, state.stat().st_gid) == owner
    assert (stale.stat().st_uid, stale.stat().st_gid) == owner


def test_a_key_of_the_wrong_size_stops_the_install_untouched(checkout: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/credstore").mkdir(parents=True)
    (root / KEY).write_bytes(b"short")
    output = run(checkout / "scripts/install", "--root", root, check=False)
    assert output.startswith("rc=1")
    assert "holds 5 bytes, not 32" in output
    assert (root / KEY).read_bytes() == b"short"
    assert not (root / "opt").exists()
    assert not (root / "etc/systemd").exists()


def test_an_existing_state_dir_key_is_moved_into_the_credential_store(checkout: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/kotihub").mkdir(parents=True)
    (root / "var/lib/kotihub/master.key").write_bytes(os.urandom(32))
    output = run(checkout / "scripts/install", "--root", root, "--dry-run")
    assert "moving that one into the credential store" in output
    assert not (root / KEY).exists()


def _operator_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A release repository's root as ``kotihub-register release init`` makes it, a copy with its signed part
    changed, and the operator's updater settings naming where the root goes."""
    from cloud_sync.register import tufrepo

    keys = {role: tufrepo.generate_key(tmp_path / f"{role}.pem") for role in tufrepo.ROLES}
    repo = tufrepo.Repository(tmp_path / "repo")
    sign = {role: tufrepo.load_signer(tmp_path / f"{role}.pem") for role in tufrepo.ROLES}
    repo.create(sign["root"], keys, targets_signer=sign["targets"], snapshot_signer=sign["snapshot"],
                timestamp_signer=sign["timestamp"])  # fmt: skip
    good = repo.metadata_dir / "1.root.json"
    tampered = tmp_path / "tampered-root.json"
    tampered.write_bytes(good.read_bytes().replace(b'"version": 1', b'"version": 7', 1))
    assert tampered.read_bytes() != good.read_bytes()
    settings = tmp_path / "updater.toml"
    settings.write_text('trusted_root = "/etc/kotihub/release-root-2026.json"\nhealth_window_s = 240.0\n')
    return good, tampered, settings


def test_the_operators_release_root_and_updater_settings_are_checked_then_placed(
    installed: tuple[Path, str], checkout: Path, tmp_path: Path
) -> None:
    root, _ = installed
    good, tampered, settings = _operator_files(tmp_path)
    placed_root, placed_settings = root / "etc/kotihub/release-root-2026.json", root / "etc/kotihub/updater.toml"
    install = checkout / "scripts/install"

    # Refused by the installed updater: nothing of the updater's is placed, neither the good half.
    before = snapshot(root / "etc")
    refused = run(install, "--root", root, "--release-root", tampered, "--updater-config", settings, check=False)
    assert refused.startswith("rc=1") and f"refused: {tampered} is not a release root" in refused
    assert f"the updater refused {settings} {tampered}; nothing of it was placed" in refused
    broken = tmp_path / "broken.toml"
    broken.write_text("health_window_s = -1\n")
    refused = run(install, "--root", root, "--release-root", good, "--updater-config", broken, check=False)
    assert refused.startswith("rc=1") and "health_window_s" in refused
    assert snapshot(root / "etc") == before
    assert run(install, "--root", root, "--release-root", tmp_path / "nowhere.json", check=False).startswith("rc=2")

    # Both good: placed where the settings say, 0644, as given.
    output = run(install, "--root", root, "--release-root", good, "--updater-config", settings)
    assert "TUF root version 1, signed by at least 1 of its 1 root keys" in output
    for placed, given in ((placed_root, good), (placed_settings, settings)):
        assert placed.read_bytes() == given.read_bytes()
        assert stat.S_IMODE(placed.stat().st_mode) == 0o644
    assert not (root / "etc/kotihub/release-root.json").exists(), "the settings named another place"
    # What the updater will read from there: these settings, which name this root, which it trusts.
    updater = root / "opt/kotihub/venv/bin/kotihub-updater"
    named = subprocess.run([updater, "check-config", placed_settings], capture_output=True, text=True, check=True)
    assert named.stdout.strip() == "/etc/kotihub/release-root-2026.json"
    assert subprocess.run([updater, "check-root", placed_root], capture_output=True, check=False).returncode == 0

    # Idempotent: the same files again change nothing; without the options, what is there is left alone.
    before = snapshot(root)
    again = run(install, "--root", root, "--release-root", good, "--updater-config", settings)
    assert snapshot(root) == before and "present, the same" in again and "placed /etc" not in again
    assert run(install, "--root", root, "--register-only", "--release-root", good, check=False).startswith("rc=2")


def test_uninstall_keeps_data_and_purge_removes_everything(installed: tuple[Path, str], checkout: Path) -> None:
    root, _ = installed
    key = (root / KEY).read_bytes()
    run(checkout / "scripts/uninstall", "--root", root)
    assert not (root / "opt/kotihub").exists()
    assert not (root / "etc/systemd/system/kotihub.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/kotihub.service").exists()
    assert staged_user(root) is None
    assert group_members(root, "kotihub") is None
    assert group_members(root, "bluetooth") == []
    # Data, config and key stay without --purge.
    assert (root / KEY).read_bytes() == key
    assert (root / "var/lib/kotihub").is_dir()
    assert (root / "etc/kotihub/kotihub.toml").is_file()

    # --purge without --yes and without a terminal refuses and removes nothing.
    refused = run(checkout / "scripts/uninstall", "--root", root, "--purge", check=False)
    assert refused.startswith("rc=2")
    assert (root / KEY).exists()

    run(checkout / "scripts/uninstall", "--root", root, "--purge", "--yes")
    leftovers = [path for path in snapshot(root) if "kotihub" in path or "credstore" in path]
    assert leftovers == []
    for name in ("passwd", "group", "shadow", "gshadow"):
        assert "kotihub" not in (root / "etc" / name).read_text()
    assert not (root / "var/lib/kotihub").exists()
