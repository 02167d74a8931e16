"""Fetching a release through TUF: refresh the metadata, verify, download the bundle, verify its hashes.

Everything that makes TUF refuse (a signature by a key the root does not name, expired metadata, a version lower
than one already trusted, a bundle whose length or hash differs from the signed targets) becomes
:class:`~updater.errors.Refused`; a register that cannot be reached becomes a transient error.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import requests
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from cloud_sync.releases import bundle_name
from updater.errors import Refused, TransientUpdateError

log = logging.getLogger(__name__)

CHUNK: Final = 256 * 1024
METADATA_PATH: Final = "/v1/releases/tuf/metadata/"
TARGETS_PATH: Final = "/v1/releases/tuf/targets/"


class SessionFetcher(FetcherInterface):
    """TUF's downloads through a ``requests`` session that carries the hub's client certificate and trusts only the
    register's CA (the default fetcher would trust the system's CAs and present no certificate)."""

    def __init__(self, session: requests.Session, *, timeout: float = 30.0) -> None:
        self.session = session
        self.timeout = timeout

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            resp = self.session.get(url, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise tuf_errors.DownloadError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            resp.close()
            raise tuf_errors.DownloadHTTPError(f"HTTP {resp.status_code} for {url}", resp.status_code)
        return self._chunks(resp)

    @staticmethod
    def _chunks(resp: requests.Response) -> Iterator[bytes]:
        with resp:
            try:
                yield from resp.iter_content(CHUNK)
            except requests.RequestException as exc:
                raise tuf_errors.DownloadError(f"{type(exc).__name__}: {exc}") from exc


def hub_session(cert: Path, key: Path, ca: Path) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE must not widen what the updater trusts
    s.cert = (str(cert), str(key))
    s.verify = str(ca)
    return s


class ReleaseSource:
    """The register's TUF repository as seen from this hub; ``metadata_dir`` keeps the trusted metadata between
    runs (which is what makes rollback and freeze attacks visible)."""

    def __init__(self, base_url: str, state_dir: Path, trusted_root: Path, session: requests.Session) -> None:
        self.base_url = base_url.rstrip("/")
        self.metadata_dir = state_dir / "tuf"
        self.download_dir = state_dir / "downloads"
        self.trusted_root = trusted_root
        self.fetcher = SessionFetcher(session)

    def _updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.download_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (self.metadata_dir / "root.json").exists():
            # First run: the root shipped with the installation is the trust anchor; later runs use the newest
            # root TUF has verified (a rotation walked through signed 2.root.json, 3.root.json ...).
            if not self.trusted_root.exists():
                # Not the release's fault: nothing is recorded against it, and the next run tries again.
                raise TransientUpdateError(f"no trusted release root at {self.trusted_root}: cannot verify releases")
            shutil.copyfile(self.trusted_root, self.metadata_dir / "root.json")
        return Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=self.base_url + METADATA_PATH,
            target_dir=str(self.download_dir),
            target_base_url=self.base_url + TARGETS_PATH,
            fetcher=self.fetcher,
            bootstrap=None,
        )

    def trust_anchor(self) -> None:
        """Loads the trusted root as every fetch starts (TUF accepts it only if a threshold of the root keys it names
        signed it); raises tuf's ``RepositoryError`` if it does not, or :class:`TransientUpdateError` if it is
        missing. Fetches nothing."""
        self._updater()

    def fetch(self, version: str, platform: str) -> Path:
        """The verified bundle of ``version`` for ``platform``, downloaded (or found already verified in the cache)."""
        name = bundle_name(version, platform)
        try:
            updater = self._updater()
            updater.refresh()
            info = updater.get_targetinfo(name)
            if info is None:
                raise Refused(f"{name} is not a signed release in the repository")
            path = updater.find_cached_target(info) or updater.download_target(info)
        except tuf_errors.DownloadHTTPError as exc:
            if exc.status_code in (404, 403):
                raise Refused(f"{name}: the repository does not serve what its metadata names ({exc})") from exc
            raise TransientUpdateError(f"release repository unavailable: {exc}") from exc
        except tuf_errors.DownloadError as exc:
            raise TransientUpdateError(f"release repository unreachable: {exc}") from exc
        except tuf_errors.RepositoryError as exc:
            # Bad signature, expired metadata, rolled-back version, hash mismatch: the repository or the path to
            # it is not to be trusted. Nothing is installed.
            log.error("release %s refused: %s: %s", version, type(exc).__name__, exc)
            raise Refused(f"{type(exc).__name__}: {exc}") from exc
        return Path(path)
