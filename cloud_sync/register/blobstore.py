"""Where clip ciphertext lives: a small interface and a filesystem implementation.

The register only ever holds age ciphertext; nothing here can decrypt it. Keys are ``household/clip_id``; the
byte length of a stored blob is the upload offset, made durable by fsync before it is reported.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _safe(key: str) -> bool:
    # Only dots would be "." or ".." (a path step), so a key needs something else too.
    return _SAFE.fullmatch(key) is not None and key.strip(".") != ""


class BlobStore(Protocol):
    """What the register needs of a blob store (filesystem here; object storage can implement the same)."""

    def size(self, household_id: str, clip_id: str) -> int:
        """Bytes stored so far (0 if none)."""

    def append(self, household_id: str, clip_id: str, offset: int, data: bytes) -> int:
        """Append ``data`` at ``offset`` (must equal the current size) durably; returns the new size."""

    def sha256(self, household_id: str, clip_id: str) -> str: ...

    def read_range(self, household_id: str, clip_id: str, offset: int, length: int) -> bytes: ...

    def read(self, household_id: str, clip_id: str, chunk: int = 1 << 20) -> Iterator[bytes]: ...

    def delete(self, household_id: str, clip_id: str) -> None: ...

    def delete_household(self, household_id: str) -> int:
        """Remove every blob of the household; returns how many were removed."""


class OffsetMismatch(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"current offset is {current}")
        self.current = current


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, household_id: str, clip_id: str) -> Path:
        # Ids are validated upstream; checked again so that no id can name a path outside the root.
        if not (_safe(household_id) and _safe(clip_id)):
            raise ValueError("unsafe blob key")
        return self.root / household_id / f"{clip_id}.age"

    def size(self, household_id: str, clip_id: str) -> int:
        try:
            return self._path(household_id, clip_id).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, household_id: str, clip_id: str, offset: int, data: bytes) -> int:
        path = self._path(household_id, clip_id)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            # Exclusive across processes (several API workers): the offset check and the write are one step.
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.fstat(fd).st_size
            if current != offset:
                raise OffsetMismatch(current)
            os.lseek(fd, offset, os.SEEK_SET)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            return offset + len(data)
        finally:
            os.close(fd)

    def sha256(self, household_id: str, clip_id: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.read(household_id, clip_id):
            digest.update(chunk)
        return digest.hexdigest()

    def read_range(self, household_id: str, clip_id: str, offset: int, length: int) -> bytes:
        with self._path(household_id, clip_id).open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def read(self, household_id: str, clip_id: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with self._path(household_id, clip_id).open("rb") as f:
            while block := f.read(chunk):
                yield block

    def delete(self, household_id: str, clip_id: str) -> None:
        self._path(household_id, clip_id).unlink(missing_ok=True)

    def delete_household(self, household_id: str) -> int:
        if not _safe(household_id):
            raise ValueError("unsafe blob key")
        directory = self.root / household_id
        if not directory.exists():
            return 0
        count = sum(1 for _ in directory.glob("*.age"))
        shutil.rmtree(directory)
        return count
