"""What the recorder needs to know about the local ffmpeg: its version, the flags that differ by version, and how to
keep stream URLs and credentials out of anything it logs.

libavformat 59 (FFmpeg 5) renamed RTSP's socket timeout ``-stimeout`` to ``-timeout`` and ``-vsync`` became
``-fps_mode``; Frigate picks the flag at run time, and so do we.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from typing import Final
from urllib.parse import urlsplit

import msgspec

from gateway.errors import PermanentError

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^ffmpeg version n?(\d+)\.(\d+)(?:\.(\d+))?", re.MULTILINE)
_LIBAVFORMAT = re.compile(r"^libavformat\s+(\d+)\.\s*(\d+)", re.MULTILINE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
IO_TIMEOUT_S: Final = 10


class FfmpegVersion(msgspec.Struct, frozen=True):
    major: int
    minor: int
    libavformat: int = 0

    @property
    def rtsp_timeout_flag(self) -> str:
        # ``-timeout`` from libavformat 59 on; before that ``-timeout`` meant the listen timeout for RTSP.
        if self.libavformat:
            return "-timeout" if self.libavformat >= 59 else "-stimeout"
        return "-timeout" if self.major >= 5 else "-stimeout"


def parse_version(text: str) -> FfmpegVersion | None:
    """Parses ``ffmpeg -version`` output (release and Debian builds); ``None`` for git snapshots or garbage."""
    match = _VERSION.search(text)
    if match is None:
        return None
    lavf = _LIBAVFORMAT.search(text)
    return FfmpegVersion(int(match[1]), int(match[2]), int(lavf[1]) if lavf else 0)


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kills ``proc`` if it still runs, then waits for it *and* reads its pipes to the end. A pipe whose reading was
    paused (nobody read it) would otherwise keep the process's transport open until garbage collection, when the
    event loop may be gone and closing it raises.

    Reaping finishes even when the caller is cancelled meanwhile (a camera that hangs up just as its server shuts
    down cancels a handler already in here): the killed child dies at once, and abandoning the wait would leave the
    same open transport behind. The cancellation is passed on once the child is reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    reaping = asyncio.ensure_future(proc.communicate())
    cancelled: asyncio.CancelledError | None = None
    while not reaping.done():
        try:
            await asyncio.shield(reaping)
        except asyncio.CancelledError as exc:
            cancelled = exc
    reaping.result()
    if cancelled is not None:
        raise cancelled


async def detect(ffmpeg: str = "ffmpeg") -> FfmpegVersion:
    """Runs ``ffmpeg -version``; :class:`PermanentError` if ffmpeg is missing or unrecognisable."""
    path = shutil.which(ffmpeg)
    if path is None:
        raise PermanentError(f"{ffmpeg} not found; install ffmpeg (Debian: apt install ffmpeg)")
    proc = await asyncio.create_subprocess_exec(
        path, "-hide_banner", "-version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        out, _ = await proc.communicate()
    finally:
        await reap(proc)
    version = parse_version(out.decode(errors="replace"))
    if version is None:
        # A git build has no release number; assume a modern one rather than refuse to record.
        log.warning("could not read the ffmpeg version; assuming FFmpeg 5 flags")
        return FfmpegVersion(5, 0)
    return version


def input_args(url: str, version: FfmpegVersion) -> list[str]:
    """Input options for a camera stream: TCP for RTSP, an I/O timeout in µs, wall-clock friendly timestamps."""
    scheme = urlsplit(url).scheme.lower()
    # ffmpeg's default 5 s of stream analysis delays the first segments and then delivers them in a burst, which
    # would smear the wall-clock time of the pre-roll; 1 s is enough to find H.264/H.265 and AAC parameters.
    args = [
        "-fflags",
        "+genpts+discardcorrupt",
        "-avoid_negative_ts",
        "make_zero",
        "-analyzeduration",
        "1000000",
        "-probesize",
        "1000000",
    ]
    timeout_us = str(IO_TIMEOUT_S * 1_000_000)
    if scheme in ("rtsp", "rtsps"):
        args += ["-rtsp_transport", "tcp", version.rtsp_timeout_flag, timeout_us]
    else:
        args += ["-rw_timeout", timeout_us]
    return [*args, "-i", url]


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Removes URLs (which may carry credentials and addresses) and any given secrets from ffmpeg's messages."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return _URL.sub("<url>", text)
