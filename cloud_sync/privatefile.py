"""Writing a secret or private file: atomically, its mode (0600 unless asked) from the first byte, durable once it
returns. Shared by the hub, its updater, the register and the household's tools, so it imports nothing of ours."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename, fsyncing the file and its directory, so a
    power cut leaves the old file or the new one, never a torn or world-readable one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing .tmp keeps its old mode through O_CREAT
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
