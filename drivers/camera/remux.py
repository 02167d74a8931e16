"""Turns a clip's MPEG-TS stream into fragmented MP4, which a browser's ``<video>`` plays, entirely through pipes.

The recorder's ring holds MPEG-TS (it concatenates byte-wise, so a clip is its segments read in order), but Chromium
will not play MPEG-TS. An ffmpeg child copies the video (``-c:v copy``: H.264 stays H.264, no re-encode) from its
stdin into fragmented MP4 on its stdout: ``empty_moov`` writes the header before any sample so nothing has to be
seeked back and patched, ``frag_keyframe`` starts a fragment at each keyframe, ``default_base_moof`` is what Media
Source Extensions expect. A pump thread writes the TS into ffmpeg's stdin while the encryptor reads the MP4 from
:class:`Remux` (a file-like object), so the plaintext only ever exists in the RAM ring and in pipe buffers, never in
a file on storage.

Audio, when the camera sends any, is copied too if it is AAC (the usual case): MPEG-TS carries AAC as ADTS, which
the MP4 muxer takes through the ``aac_adtstoasc`` filter, given up front because ``empty_moov`` writes the header
before the first packet. That filter refuses any other codec, so other audio (MP2, AC-3) is encoded to AAC. Which
one it is, ffprobe reads from the clip's first bytes (the stream types in the TS program table) before the remux
starts. The MPEG-TS demuxer handles timestamp discontinuities, so a clip that spans a recorder restart remuxes.

H.265 is tagged ``hvc1`` (``-tag:v hvc1``): ffmpeg's MP4 muxer writes ``hev1`` by default, which Apple's players
(Safari, QuickTime, HomeKit) refuse. ``hvc1`` says the parameter sets are in the sample entry, which the copy keeps
(ffmpeg moves them there from the TS's in-band VPS/SPS/PPS). The same ffprobe names the video codec; H.264 keeps its
``avc1`` (the tag would be refused for it), and so does a clip ffprobe could not read.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import subprocess
import threading
from typing import Any, Final, NamedTuple, cast

from drivers.camera.ffmpeg import redact
from gateway.errors import TransientError

log = logging.getLogger(__name__)

_PUMP_CHUNK: Final = 1 << 16


class RemuxError(TransientError):
    """ffmpeg could not turn the clip into MP4 (it exited with an error)."""


PROBE_BYTES: Final = 64 * 1024
"""How much of the clip's start ffprobe sees to name the codecs: the program table comes first in a segment."""
COPY_AAC: Final = ("-c:a", "copy", "-bsf:a", "aac_adtstoasc")
ENCODE_AAC: Final = ("-c:a", "aac")
COPY_VIDEO: Final = ("-c:v", "copy")
COPY_HEVC: Final = ("-c:v", "copy", "-tag:v", "hvc1")


class StreamArgs(NamedTuple):
    """ffmpeg's arguments for the clip's video and audio, as ffprobe found them."""

    video: tuple[str, ...] = COPY_VIDEO
    audio: tuple[str, ...] = ENCODE_AAC


def command(
    ffmpeg: str = "ffmpeg", audio: tuple[str, ...] = ENCODE_AAC, video: tuple[str, ...] = COPY_VIDEO
) -> list[str]:
    """ffmpeg's arguments: MPEG-TS on stdin to fragmented MP4 on stdout, video and audio as ``video``/``audio`` say."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-f", "mpegts", "-i", "pipe:0",
        "-map", "0:v:0", "-map", "0:a?", *video, *audio,
        "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "pipe:1",
    ]  # fmt: skip


def stream_args(head: bytes, ffprobe: str = "ffprobe") -> StreamArgs:
    """Copy AAC (or no audio), encode any other audio; tag H.265 ``hvc1``. When in doubt (ffprobe failed): encode the
    audio and copy the video untagged, which always works."""
    try:
        found = subprocess.run(
            [ffprobe, "-v", "error", "-f", "mpegts", "-i", "pipe:0",
             "-show_entries", "stream=codec_type,codec_name", "-of", "csv=p=0"],
            input=head, capture_output=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return StreamArgs()
    # A stream is listed once per section it appears in (its program's and its own): a set of (name, type) rows.
    rows = {tuple(line.split(",")[:2]) for line in found.stdout.decode(errors="replace").split()}
    video = [name for name, *kind in rows if kind == ["video"]]
    audio = {name for name, *kind in rows if kind == ["audio"]}
    return StreamArgs(
        video=COPY_HEVC if video == ["hevc"] else COPY_VIDEO,
        audio=COPY_AAC if audio <= {"aac"} else ENCODE_AAC,
    )


def ffprobe_beside(ffmpeg: str) -> str:
    """The ffprobe that comes with ``ffmpeg`` (``/opt/ff/bin/ffmpeg`` → ``/opt/ff/bin/ffprobe``)."""
    head, sep, tail = ffmpeg.rpartition("/")
    return f"{head}{sep}{tail.replace('ffmpeg', 'ffprobe')}" if "ffmpeg" in tail else "ffprobe"


class Remux(io.RawIOBase):
    """A read-only stream of ``source`` (MPEG-TS) remuxed to fragmented MP4 by an ffmpeg child (blocking reads).

    Reading to the end raises what the source raised (:class:`~gateway.errors.ClipAborted` for an aborted clip) or
    :class:`RemuxError` if ffmpeg failed, so a broken clip is never sealed as if whole. An empty source gives an empty
    stream (the caller decides what a clip without video is). :meth:`close` kills ffmpeg if it still runs.
    """

    def __init__(self, source: io.RawIOBase, *, ffmpeg: str = "ffmpeg") -> None:
        super().__init__()
        self._source = source
        self._ffmpeg = ffmpeg
        self._stderr: collections.deque[str] = collections.deque(maxlen=10)
        self._error: BaseException | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._empty = False
        self._head = b""
        self.audio: tuple[str, ...] = ()
        self.video: tuple[str, ...] = ()
        self.bytes_in = 0
        self.bytes_out = 0

    def start(self) -> None:
        """Reads the clip's first :data:`PROBE_BYTES` (or all of a shorter clip), chooses the streams' handling and
        starts ffmpeg with its pump; called by the first read. Raises what the source raises."""
        if self._proc is not None or self._empty:
            return
        head = bytearray()
        chunk = bytearray(_PUMP_CHUNK)
        while len(head) < PROBE_BYTES and (n := self._source.readinto(chunk) or 0):
            head += chunk[:n]
        if not head:
            self._empty = True
            return
        self._head = bytes(head)
        self.video, self.audio = stream_args(self._head, ffprobe_beside(self._ffmpeg))
        self._proc = subprocess.Popen(
            command(self._ffmpeg, self.audio, self.video),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        # bufsize=0: a raw pipe, so a read returns what ffmpeg has written so far instead of waiting to fill up.
        self._stdout = cast(io.FileIO, self._proc.stdout)
        # Daemon threads: a pump blocked on a clip's post-roll ends when the recorder ends or aborts the feed.
        self._pump = threading.Thread(target=self._feed, name="clip-remux-pump", daemon=True)
        self._drain = threading.Thread(target=self._drain_stderr, name="clip-remux-stderr", daemon=True)
        self._pump.start()
        self._drain.start()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "started"
        return self._proc.pid

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.start()
        if self._proc is None:
            return 0  # an empty clip: the caller decides what a clip without video is
        n = self._stdout.readinto(buffer)
        if n:
            self.bytes_out += n
            return n
        return self._finish()

    def _finish(self) -> int:
        assert self._proc is not None
        self._pump.join()
        returncode = self._proc.wait()
        self._drain.join()
        if self._error is not None:
            raise self._error
        if returncode != 0:
            detail = redact(" | ".join(self._stderr))
            log.debug("ffmpeg (remux) said: %s", detail)
            raise RemuxError(f"ffmpeg could not remux the clip to MP4 (exit {returncode})")
        return 0

    def _feed(self) -> None:
        assert self._proc is not None
        stdin = self._proc.stdin
        assert stdin is not None
        buffer = bytearray(_PUMP_CHUNK)
        view = memoryview(buffer)
        try:
            self._write(stdin, memoryview(self._head))
            self._head = b""
            while n := self._source.readinto(view) or 0:
                self._write(stdin, view[:n])
        except BrokenPipeError:
            pass  # ffmpeg died; its exit status says why
        except BaseException as exc:
            # An aborted clip: ffmpeg must not finish a well-formed MP4 of half of it.
            self._error = exc
            self._kill()
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _write(self, stdin: Any, data: memoryview) -> None:
        done = 0
        while done < len(data):  # a raw pipe may take part of a write
            done += stdin.write(data[done:]) or 0
        self.bytes_in += len(data)

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line[:300].decode(errors="replace").strip())

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def close(self) -> None:
        if not self.closed and self._proc is not None:
            self._kill()
            self._proc.wait()
            self._pump.join(timeout=1.0)  # still blocked on an unfinished feed: it ends when the feed does
            self._drain.join()
            self._stdout.close()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        super().close()
