"""Where the plaintext pre-roll lives: a private directory on a RAM-backed filesystem, and how to prove it is one.

Pre-roll means the last few seconds of video must exist *before* anything happens, so some plaintext has to be
buffered. It is kept on tmpfs (systemd's ``RuntimeDirectory=`` under /run, or /dev/shm), never on the SD card:
tmpfs pages live in RAM, so a segment that is unlinked is gone, nothing of it reaches persistent storage, and a
power cut or reboot erases all of it. (tmpfs can be swapped out like any memory: the hub runs without swap, or with
encrypted swap, or the unit sets ``MemorySwapMax=0``.) The directory is 0700 and owned by the daemon, is
wiped at start (a crash may leave segments), when a camera is restricted, and at shutdown. Segments older than the
longest pre-roll are unlinked continuously, so at most a few seconds of video exist at any time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Final

from gateway.errors import PermanentError

log = logging.getLogger(__name__)

RAM_FILESYSTEMS: Final = frozenset({"tmpfs", "ramfs"})


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def fs_type_of(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount holding absolute ``path``, from /proc/self/mountinfo text. Pure, total."""
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount_point = _unescape(fields[4])
        prefix = mount_point.rstrip("/") + "/"
        if (path == mount_point or path.startswith(prefix) or mount_point == "/") and (
            best is None or len(mount_point) >= best[0]
        ):
            best = (len(mount_point), tail[0])
    return best[1] if best else None


def is_ram_backed(path: Path) -> bool:
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return fs_type_of(str(path.resolve()), mountinfo) in RAM_FILESYSTEMS


def default_root() -> Path:
    """systemd's ``$RUNTIME_DIRECTORY`` (tmpfs under /run) when set, else a per-user directory in /dev/shm."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "camera"
    # /dev/shm is shared: prepare() refuses a directory there that is a symlink or owned by someone else.
    return Path("/dev/shm") / f"kotihub-{os.getuid()}" / "camera"  # noqa: S108


def prepare(directory: Path, *, require_ram: bool = True) -> Path:
    """Creates ``directory`` (0700) empty; refuses one that is not on tmpfs/ramfs unless told otherwise."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for level in (directory, directory.parent):
        info = level.lstat()
        if level.is_symlink() or info.st_uid != os.getuid():
            raise PermanentError(f"camera buffer {level} is a symlink or not ours; refusing to use it")
    if require_ram and not is_ram_backed(directory):
        raise PermanentError(
            f"camera buffer {directory} is not on tmpfs; plaintext video must not reach persistent storage"
        )
    os.chmod(directory, 0o700)
    wipe(directory)
    return directory


def wipe(directory: Path) -> None:
    """Unlinks everything in ``directory`` (on tmpfs the freed pages are zeroed by the kernel before any reuse)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove a buffered segment: %s", exc.strerror)


def remove(directory: Path) -> None:
    wipe(directory)
    with contextlib.suppress(OSError):
        directory.rmdir()
