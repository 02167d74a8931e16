"""What ``scripts/install --release-root FILE --updater-config FILE`` checks before it places the operator's files:
the release root is one the updater can start from, and the settings are ones it can read.

The root is loaded by the updater's own code (:class:`~updater.fetch.ReleaseSource`, which hands it to TUF's
``Updater`` as its trust anchor, in a scratch directory): TUF accepts it only if it is root metadata signed by a
threshold of the root keys it names itself. An expired root is accepted (TUF walks from it to the newest root the
register serves, as it would from an old installation image), but said. The settings go through the updater's
config schema (:func:`updater.config.load`); the root's place on disk is the one they name (``trusted_root``).
"""

from __future__ import annotations

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


def check_root(path: Path) -> RootSummary:
    """The root at ``path`` as the updater would load it, or :class:`BadInstallFile` saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInstallFile(f"cannot read the release root {path}: {exc.strerror}") from exc
    with tempfile.TemporaryDirectory(prefix="kotihub-root-check-") as scratch:
        source = ReleaseSource(NOWHERE, Path(scratch), path, requests.Session())
        try:
            source.trust_anchor()
        except (tuf_errors.RepositoryError, TransientUpdateError) as exc:
            raise BadInstallFile(f"{path} is not a release root the updater can trust: {exc}") from exc
    root = Metadata[Root].from_bytes(data).signed  # parsed and verified above
    role = root.roles[Root.type]
    return RootSummary(root.version, root.expires, role.threshold, len(role.keyids))


def check_config(path: Path) -> configuration.UpdaterConfig:
    """The settings at ``path`` through the updater's schema, or :class:`BadInstallFile` saying why not."""
    if not path.is_file():
        raise BadInstallFile(f"no updater settings at {path}")
    try:
        cfg = configuration.load(path)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a DecodeError
        raise BadInstallFile(f"{path}: {exc}") from exc
    if not Path(cfg.trusted_root).is_absolute():
        raise BadInstallFile(f"{path}: trusted_root must be an absolute path, not {cfg.trusted_root!r}")
    return cfg
