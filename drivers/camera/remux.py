"""Turns a clip's MPEG-TS stream into fragmented MP4, which a browser's ``<video>`` plays, entirely through pipes.

The recorder's ring holds MPEG-TS (it concatenates byte-wise, so a clip is its segments read in order), but Chromium
will not play MPEG-TS. An ffmpeg child copies the video (``-c:v copy``: H.264 stays H.264, no re-encode) from its
stdin into fragmented MP4 on its stdout: ``empty_moov`` writes the header before any sample so nothing has to be
seeked back and patched, ``frag_keyframe`` starts a fragment at each keyframe, ``default_base_moof`` is what Media
Source Extensions expect. A pump thread writes the TS into ffmpeg's stdin while the encryptor reads the MP4 from
:class:`Remux` (a file-like object), so the plaintext only ever exists in the RAM ring and in pipe buffers, never in
a file on storage.

Audio, when the camera sends any, is encoded to AAC: MPEG-TS carries AAC as ADTS, which MP4 only takes after a
bitstream filter that fails on any other codec (MP2, AC-3), and a camera's mono audio costs little to encode. The
MPEG-TS demuxer handles timestamp discontinuities, so a clip that spans a recorder restart still remuxes.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import subprocess
import threading
from typing import Any, Final, cast

from drivers.camera.ffmpeg import redact
from gateway.errors import TransientError

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "video/mp4"
"""What a sealed camera clip decrypts to (clips sealed before this release decrypt to ``video/mp2t``)."""

_PUMP_CHUNK: Final = 1 << 16


class RemuxError(TransientError):
    """ffmpeg could not turn the clip into MP4 (it exited with an error)."""


def command(ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg's arguments: MPEG-TS on stdin to fragmented MP4 on stdout, streams copied."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-f", "mpegts", "-i", "pipe:0",
        "-map", "0:v:0", "-map", "0:a?", "-c:v", "copy", "-c:a", "aac",
        "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "pipe:1",
    ]  # fmt: skip


class Remux(io.RawIOBase):
    """A read-only stream of ``source`` (MPEG-TS) remuxed to fragmented MP4 by an ffmpeg child (blocking reads).

    Reading to the end raises what the source raised (:class:`~gateway.errors.ClipAborted` for an aborted clip) or
    :class:`RemuxError` if ffmpeg failed, so a broken clip is never sealed as if whole. An empty source gives an empty
    stream (the caller decides what a clip without video is). :meth:`close` kills ffmpeg if it still runs.
    """

    def __init__(self, source: io.RawIOBase, *, ffmpeg: str = "ffmpeg") -> None:
        super().__init__()
        self._source = source
        self._stderr: collections.deque[str] = collections.deque(maxlen=10)
        self._error: BaseException | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._proc = subprocess.Popen(
            command(ffmpeg), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
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
        return self._proc.pid

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._stdout.readinto(buffer)
        if n:
            self.bytes_out += n
            return n
        return self._finish()

    def _finish(self) -> int:
        self._pump.join()
        returncode = self._proc.wait()
        self._drain.join()
        if self._error is not None:
            raise self._error
        if self.bytes_in == 0:
            return 0
        if returncode != 0:
            detail = redact(" | ".join(self._stderr))
            log.debug("ffmpeg (remux) said: %s", detail)
            raise RemuxError(f"ffmpeg could not remux the clip to MP4 (exit {returncode})")
        return 0

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        buffer = bytearray(_PUMP_CHUNK)
        view = memoryview(buffer)
        try:
            while n := self._source.readinto(view) or 0:
                done = 0
                while done < n:  # a raw pipe may take part of a write
                    done += stdin.write(view[done:n]) or 0
                self.bytes_in += n
        except BrokenPipeError:
            pass  # ffmpeg died; its exit status says why
        except BaseException as exc:
            # An aborted clip: ffmpeg must not finish a well-formed MP4 of half of it.
            self._error = exc
            self._kill()
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line[:300].decode(errors="replace").strip())

    def _kill(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def close(self) -> None:
        if not self.closed:
            self._kill()
            self._proc.wait()
            self._pump.join(timeout=1.0)  # still blocked on an unfinished feed: it ends when the feed does
            self._drain.join()
            self._stdout.close()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        super().close()
