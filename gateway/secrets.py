"""Credentials for drivers and the uplink: systemd credentials first, then ``<state_dir>/credentials/`` (0600 files).

Names are like ``mqtt.password`` or ``ble.bindkey.a4c1380a0b0c``. Values never appear in the config, logs or store.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


class CredentialStore:
    def __init__(self, state_dir: Path, credentials_dir: str | None = None) -> None:
        systemd_dir = credentials_dir if credentials_dir is not None else os.environ.get("CREDENTIALS_DIRECTORY")
        self._dirs = [Path(d) for d in (systemd_dir, str(state_dir / "credentials")) if d]

    def get(self, name: str) -> bytes | None:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a credential name: {name!r}")
        for directory in self._dirs:
            path = directory / name
            if path.is_file():
                if path.stat().st_mode & 0o077 and not str(directory).startswith(
                    os.environ.get("CREDENTIALS_DIRECTORY", "\0")
                ):
                    # The name can hold a MAC or a host: it goes to DEBUG only.
                    log.error(
                        "a credential is readable by others (mode %04o); ignoring it", stat.S_IMODE(path.stat().st_mode)
                    )
                    log.debug("the credential readable by others is %s", name)
                    return None
                return path.read_bytes().strip()
        return None
