"""What ``scripts/install --release-root FILE --updater-config FILE`` checks before it places the operator's files
(``kotihub-updater install-files``): the release root is one the updater can start from, and the settings are ones
it can read.

Each file is read once; the bytes read are checked and exactly those bytes are placed (:func:`place` takes bytes,
not a path), so a file changed between the check and the copy cannot be placed unchecked. The root is loaded by the
updater's own code (:class:`~updater.fetch.ReleaseSource`, which hands it to TUF's ``Updater`` as its trust anchor,
from a private scratch directory holding those bytes): TUF accepts it only if it is root metadata signed by a
threshold of the root keys it names itself. An expired root is accepted (TUF walks from it to the newest root the
register serves, as it would from an old installation image), but said. The settings go through the updater's
config schema (:mod:`updater.config`); the root's place on disk is the one they name (``trusted_root``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import requests
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root

from updater import config as configuration
from updater.errors import Refused, TransientUpdateError
from updater.fetch import ReleaseSource

NOWHERE = "https://release-root-check.invalid"
"""The check never fetches: TUF loads the trust anchor when it is made, before any download."""


class BadInstallFile(Refused):
    """A release root or an updater.toml the updater could not use; the install stops before placing it."""


@dataclass(frozen=True)
class RootSummary:
    version: int
    expires: datetime
    threshold: int
    keys: int

    @property
    def expired(self) -> bool:
        return self.expires <= datetime.now(UTC)

    def text(self) -> str:
        state = "EXPIRED (the updater walks to a newer root on the register)" if self.expired else "valid"
        return (
            f"TUF root version {self.version}, signed by at least {self.threshold} of its {self.keys} root keys, "
            f"expires {self.expires:%Y-%m-%d %H:%M} UTC: {state}"
        )


def read_once(path: Path, what: str) -> bytes:
    """The bytes of ``path``, read once: what is checked and placed, whatever happens to the file afterwards."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInstallFile(f"cannot read the {what} {path}: {exc.strerror}") from exc


def check_root(path: Path) -> RootSummary:
    """The root at ``path`` as the updater would load it, or :class:`BadInstallFile` saying why not."""
    return check_root_bytes(read_once(path, "release root"), str(path))


def check_root_bytes(data: bytes, name: str) -> RootSummary:
    """``data`` (the root read from ``name``) as the updater would load it, or :class:`BadInstallFile`."""
    with tempfile.TemporaryDirectory(prefix="kotihub-root-check-") as scratch:
        # A private copy of these very bytes (the directory is 0700): the updater's loader reads this, not ``name``.
        anchor = Path(scratch) / "release-root.json"
        anchor.write_bytes(data)
        source = ReleaseSource(NOWHERE, Path(scratch), anchor, requests.Session())
        try:
            source.trust_anchor()
        except (tuf_errors.RepositoryError, TransientUpdateError) as exc:
            raise BadInstallFile(f"{name} is not a release root the updater can trust: {exc}") from exc
    root = Metadata[Root].from_bytes(data).signed  # parsed and verified above
    role = root.roles[Root.type]
    return RootSummary(root.version, root.expires, role.threshold, len(role.keyids))


def check_config(path: Path) -> configuration.UpdaterConfig:
    """The settings at ``path`` through the updater's schema, or :class:`BadInstallFile` saying why not."""
    if not path.is_file():
        raise BadInstallFile(f"no updater settings at {path}")
    return check_config_bytes(read_once(path, "updater settings"), str(path))


def check_config_bytes(data: bytes, name: str) -> configuration.UpdaterConfig:
    """``data`` (the settings read from ``name``) through the updater's schema, or :class:`BadInstallFile`."""
    try:
        cfg = configuration.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a DecodeError
        raise BadInstallFile(f"{name}: {exc}") from exc
    if not Path(cfg.trusted_root).is_absolute():
        raise BadInstallFile(f"{name}: trusted_root must be an absolute path, not {cfg.trusted_root!r}")
    if ".." in Path(cfg.trusted_root).parts:
        # The install places the root there (under a staging root too): no way out of it.
        raise BadInstallFile(f"{name}: trusted_root must not contain '..', not {cfg.trusted_root!r}")
    return cfg


def place(data: bytes, target: Path, mode: int = 0o644) -> bool:
    """Puts exactly ``data`` at ``target`` (``mode``, owned by root when run as root), atomically: a reader sees the
    old file or the new one, never a part. False if it was already there: a regular file (not a link), byte for
    byte, with that mode and owner."""
    root = os.geteuid() == 0
    with contextlib.suppress(OSError):
        st = target.lstat()
        owned = not root or (st.st_uid, st.st_gid) == (0, 0)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode and owned and target.read_bytes() == data:
            return False
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if root:
                os.fchown(f.fileno(), 0, 0)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dirfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return True


SETTINGS_PATH = Path("/etc/kotihub/updater.toml")


def install_files(dest: Path, *, release_root: Path | None, updater_config: Path | None) -> list[str]:
    """``scripts/install`` step 7: reads each given file once, checks both, and only then places what was checked
    under ``dest`` (``/``, or a staging root): the settings as /etc/kotihub/updater.toml, the root where the settings
    say (``trusted_root``; without new settings, where the installed ones or the defaults say). Returns what was
    done, a line each; :class:`BadInstallFile` before anything is placed if either is refused."""

    def under(path: str | Path) -> Path:
        return dest / Path(path).relative_to("/")

    settings_data = root_data = None
    lines = []
    if updater_config is not None:
        settings_data = read_once(updater_config, "updater settings")
        cfg = check_config_bytes(settings_data, str(updater_config))
    elif under(SETTINGS_PATH).is_file():
        cfg = check_config(under(SETTINGS_PATH))
    else:
        cfg = configuration.UpdaterConfig()
    if release_root is not None:
        root_data = read_once(release_root, "release root")
        lines.append(f"{release_root}: {check_root_bytes(root_data, str(release_root)).text()}")
    # Both checked: only now is either placed.
    for data, target in ((settings_data, SETTINGS_PATH), (root_data, Path(cfg.trusted_root))):
        if data is None:
            continue
        existed = under(target).exists()
        if place(data, under(target)):
            lines.append(f"replacing {target} (the operator's new one)" if existed else f"placed {target}")
        else:
            lines.append(f"{target}: present, the same")
    state = "present" if under(cfg.trusted_root).exists() else "missing: signed updates wait for it"
    lines.append(f"updater: {cfg.trusted_root} {state}")
    return lines
