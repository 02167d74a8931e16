"""One camera's recorder: a supervised ffmpeg that stream-copies the camera into short MPEG-TS segments in RAM, and
the clip capture that turns pre-roll + post-roll segments into one plaintext stream for the encryptor.

ffmpeg copies (never re-encodes: a Pi cannot afford it) into ``seg<N>.ts`` files in a private tmpfs directory (see
:mod:`drivers.camera.ringbuffer` for why a wiped plaintext ring in RAM is safe) and announces each finished segment
on stdout through the segment muxer's CSV list. That line is both the "segment ready" signal and the liveness
heartbeat: no line for ``stall_s`` means the camera stalled, and the process is killed and restarted with backoff.
MPEG-TS segments concatenate byte-wise into a playable stream, so a clip is the segment files read in order
(:class:`ClipFeed`), remuxed to MP4 between pipes (:mod:`drivers.camera.remux`) and encrypted as it streams; nothing
is written to disk in the clear.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from drivers.camera import ringbuffer
from drivers.camera.ffmpeg import FfmpegVersion, input_args, reap, redact
from gateway.backoff import Backoff
from gateway.errors import ClipAborted, TransientError

log = logging.getLogger(__name__)

_SEGMENT_LINE: Final = re.compile(r"^(seg(\d{10})\.ts),(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$")


class RecorderSettings(msgspec.Struct, frozen=True, kw_only=True):
    segment_s: float = 2.0
    pre_roll_s: float = 6.0
    post_roll_s: float = 10.0
    stall_s: float = 10.0
    """No new segment for this long (after the first) means the camera stalled."""
    max_clip_s: float = 120.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    kill_grace_s: float = 3.0
    """How long ffmpeg gets to exit on SIGTERM before SIGKILL."""
    ffmpeg: str = "ffmpeg"


class Segment(msgspec.Struct, frozen=True):
    index: int
    path: Path
    duration: float
    end_wall: float
    """Wall-clock time the segment was announced, i.e. about when its last frame arrived."""

    @property
    def start_wall(self) -> float:
        return self.end_wall - self.duration


def parse_segment_line(line: bytes) -> tuple[str, int, float] | None:
    """``seg0000000042.ts,84.0,86.0`` → (file name, index, duration); ``None`` for anything else. Pure, total."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    match = _SEGMENT_LINE.match(text)
    if match is None:
        return None
    duration = float(match[4]) - float(match[3])
    if not 0 <= duration < 3600:
        return None
    return match[1], int(match[2]), duration


def select_pre_roll(segments: list[Segment], trigger: float, pre_roll_s: float) -> list[Segment]:
    """The buffered segments that overlap ``[trigger - pre_roll_s, trigger]``, oldest first."""
    return [s for s in segments if s.end_wall > trigger - pre_roll_s and s.start_wall <= trigger]


class ClipFeed(io.RawIOBase):
    """A read-only stream over segment files, fed from the event loop and read by the encryptor's thread.

    Reads block until the next segment is queued, so encryption runs while post-roll is still being recorded and
    memory stays at one read buffer. :meth:`abort` makes the next read raise, so an aborted clip is never sealed.
    """

    _END: Final = object()

    def __init__(self) -> None:
        super().__init__()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._current: io.BufferedReader | None = None
        self._done = False
        self._aborted = threading.Event()
        self.bytes_read = 0

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def push(self, path: Path) -> None:
        self._queue.put(path)

    def end(self) -> None:
        self._queue.put(self._END)

    def abort(self) -> None:
        self._aborted.set()
        self._queue.put(self._END)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._aborted.is_set():
                self._close_current()
                raise ClipAborted("clip aborted")
            if self._current is not None:
                n = self._current.readinto(view)
                if n:
                    self.bytes_read += n
                    return n
                self._close_current()
            if self._done:
                return 0
            item = self._queue.get()
            if item is self._END:
                self._done = True
                continue
            self._current = open(item, "rb")  # noqa: SIM115 - closed in _close_current

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        self._close_current()
        super().close()


class Changes:
    """A level-free "something changed" signal that synchronous code may raise: waiters wake on the next bump."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def bump(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def next(self) -> None:
        await self._event.wait()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.next()


class Capture:
    """A clip being captured: its feed for the encryptor and, once complete, its start and duration."""

    def __init__(self, recorder: Recorder, reason: str, trigger: float, pre: list[Segment]) -> None:
        self.recorder = recorder
        self.reason = reason
        self.trigger = trigger
        self.feed = ClipFeed()
        self.segments: list[Segment] = []
        self.truncated = False
        for segment in pre:
            self._add(segment)

    def _add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.feed.push(segment.path)

    @property
    def started(self) -> float:
        return self.segments[0].start_wall if self.segments else self.trigger

    @property
    def duration_s(self) -> float:
        return round(sum(s.duration for s in self.segments), 3)

    @property
    def last_index(self) -> int:
        return self.segments[-1].index if self.segments else -1

    async def complete(self) -> None:
        """Feeds post-roll segments as they arrive, then ends the feed. Raises :class:`ClipAborted` if restricted."""
        rec = self.recorder
        settings = rec.settings
        until = self.trigger + settings.post_roll_s
        wait_s = settings.stall_s + 2 * settings.segment_s
        # The highest buffered segment already looked at, taken or skipped: without it, skipped stale segments
        # would count as fresh forever and this loop would spin without yielding.
        seen = self.last_index
        try:
            while True:
                if rec.restricted or self.feed.aborted:
                    raise ClipAborted("camera restricted while recording a clip")
                if self.segments and self.segments[-1].end_wall >= until:
                    break
                if self.duration_s >= settings.max_clip_s:
                    self.truncated = True
                    break
                fresh = [s for s in rec.segments if s.index > seen]
                if fresh:
                    # Segments from before the trigger that were not pre-roll are skipped only if pre-roll was
                    # empty; otherwise the stream stays contiguous.
                    for segment in fresh:
                        seen = segment.index
                        if self.segments or segment.end_wall > self.trigger - settings.pre_roll_s:
                            self._add(segment)
                        if segment.end_wall >= until:
                            break
                    continue
                try:
                    async with asyncio.timeout(wait_s):
                        await rec.changes.next()
                except TimeoutError:
                    # The camera stopped delivering: a shorter clip is better evidence than none.
                    self.truncated = True
                    break
        except BaseException:
            self.feed.abort()
            raise
        self.feed.end()


class RecorderHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One camera's recorder, in the camera driver's health (no address, no credentials)."""

    state: str
    starts: int
    restarts: int
    stalls: int
    failures: int
    segments_total: int
    segments_buffered: int
    last_segment_age_s: float | None
    last_error: str
    clips_in_progress: int


class Recorder:
    """Keeps one camera's rolling segment buffer alive; :meth:`run` supervises ffmpeg until cancelled."""

    def __init__(
        self,
        *,
        device_id: str,
        url: str,
        settings: RecorderSettings,
        buffer_dir: Path,
        version: FfmpegVersion,
        secrets: tuple[str, ...] = (),
        require_ram: bool = True,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.device_id = device_id
        self._url = url
        self._secrets = (url, *secrets)
        self.settings = settings
        self.buffer_dir = buffer_dir
        self._version = version
        self._require_ram = require_ram
        self._rng = rng
        self.segments: list[Segment] = []
        self.changes = Changes()
        self._captures: set[Capture] = set()
        self._allowed = asyncio.Event()
        self._allowed.set()
        self._proc: asyncio.subprocess.Process | None = None
        self._killed_for_restriction = False
        self._next_index = 0
        self.state = "starting"
        self.starts = 0
        self.restarts = 0
        self.stalls = 0
        self.failures = 0
        self.segments_total = 0
        self.last_segment_at: float | None = None
        self.last_error = ""
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)

    # -- control -------------------------------------------------------------------------------------------------

    @property
    def restricted(self) -> bool:
        return not self._allowed.is_set()

    @property
    def running(self) -> bool:
        """Whether an ffmpeg process is alive for this camera."""
        return self._proc is not None

    def set_restricted(self, restricted: bool) -> None:
        """Restriction stops recording at once: ffmpeg is killed, open clips aborted and the buffer wiped."""
        if restricted:
            self._allowed.clear()
            self.state = "restricted"
            for capture in list(self._captures):
                capture.feed.abort()
            if self._proc is not None and self._proc.returncode is None:
                self._killed_for_restriction = True
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            self.segments.clear()
            ringbuffer.wipe(self.buffer_dir)
            self.changes.bump()
        else:
            self._allowed.set()
            if self.state == "restricted":
                self.state = "starting"
            self.changes.bump()

    def start_capture(self, reason: str, trigger: float | None = None) -> Capture:
        """Begins a clip: pins the pre-roll now; the caller feeds ``capture.feed`` to the encryptor and awaits
        ``capture.complete()``, then calls :meth:`release`."""
        if self.restricted:
            raise ClipAborted("camera is restricted")
        when = time.time() if trigger is None else trigger
        capture = Capture(self, reason, when, select_pre_roll(self.segments, when, self.settings.pre_roll_s))
        self._captures.add(capture)
        return capture

    def release(self, capture: Capture) -> None:
        self._captures.discard(capture)
        capture.feed.abort()  # no-op for a finished feed; unblocks a reader of an unfinished one
        self._trim()

    async def snapshot(self, timeout: float = 10.0) -> bytes:
        """A JPEG of the newest buffered segment's first frame (a keyframe), produced in memory only: the segment
        goes to ffmpeg's stdin and the JPEG comes back on its stdout."""
        if self.restricted:
            raise ClipAborted("camera is restricted")
        if not self.segments:
            raise TransientError("no video buffered yet")
        # A segment is a few hundred KiB on tmpfs; reading it here is quicker than a thread hop, and the ring
        # trimmer runs on this loop too, so it cannot unlink the file mid-read.
        data = self.segments[-1].path.read_bytes()
        proc = await asyncio.create_subprocess_exec(
            self.settings.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0",
            "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "4", "-f", "image2pipe", "pipe:1",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(timeout):
                jpeg, _ = await proc.communicate(data)
        finally:
            await reap(proc)
        if proc.returncode != 0 or not jpeg.startswith(b"\xff\xd8"):
            raise TransientError("ffmpeg could not make a snapshot from the buffered video")
        return jpeg

    def health(self) -> RecorderHealth:
        age = None if self.last_segment_at is None else round(time.time() - self.last_segment_at, 1)
        return RecorderHealth(
            state=self.state,
            starts=self.starts,
            restarts=self.restarts,
            stalls=self.stalls,
            failures=self.failures,
            segments_total=self.segments_total,
            segments_buffered=len(self.segments),
            last_segment_age_s=age,
            last_error=self.last_error,
            clips_in_progress=len(self._captures),
        )

    async def wait_until(self, predicate: Callable[[Recorder], bool], timeout: float) -> None:
        """Waits until ``predicate(self)`` holds, re-checking on every state change; ``TimeoutError`` otherwise."""
        await self.changes.wait_for(lambda: predicate(self), timeout)

    # -- supervision ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        ringbuffer.prepare(self.buffer_dir, require_ram=self._require_ram)
        backoff = Backoff(
            self.settings.backoff_initial_s,
            self.settings.backoff_max_s,
            uniform=lambda lo, hi: lo + (hi - lo) * self._rng(),
        )
        try:
            while True:
                if self.restricted:
                    await self._notify()
                    await self._allowed.wait()
                healthy = await self._run_once()
                if healthy is None:
                    continue  # stopped for restriction: no failure, no backoff
                self.restarts += 1
                if healthy:
                    backoff.reset()
                pause = backoff.next()
                self.state = f"backoff:{self.state}"
                await self._notify()
                log.info("camera recorder restarts in %.1f s (%s)", pause, self.state)
                with contextlib.suppress(TimeoutError):
                    # Sleeping here is the backoff itself, not synchronisation; restriction ends it early.
                    async with asyncio.timeout(pause):
                        await self._wait_restricted()
        finally:
            # Stopping: no clip can complete without the buffer, so abort the open ones before removing it.
            for capture in list(self._captures):
                capture.feed.abort()
            self.segments.clear()
            ringbuffer.remove(self.buffer_dir)
            self.state = "stopped"
            self.changes.bump()

    async def _wait_restricted(self) -> None:
        while not self.restricted:
            await self.changes.next()

    def _command(self) -> list[str]:
        s = self.settings
        return [
            s.ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "error",
            *input_args(self._url, self._version),
            "-map",
            "0:v:0",
            "-map",
            "0:a?",
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            f"{s.segment_s:g}",
            "-segment_format",
            "mpegts",
            "-segment_start_number",
            str(self._next_index),
            "-segment_list",
            "pipe:1",
            "-segment_list_type",
            "csv",
            str(self.buffer_dir / "seg%010d.ts"),
        ]

    async def _run_once(self) -> bool | None:
        """One ffmpeg lifetime: whether it delivered at least one segment; ``None`` if stopped for restriction."""
        self.starts += 1
        self._stderr.clear()
        self.state = "connecting"
        await self._notify()
        proc = await asyncio.create_subprocess_exec(
            *self._command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._proc = proc
        if self.restricted:
            # Restricted while ffmpeg was being started: set_restricted() had no process to kill yet.
            self._killed_for_restriction = True
            proc.kill()
        delivered = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._drain_stderr(proc), name=f"ffmpeg-stderr:{self.device_id}")
                delivered = await self._read_segments(proc)
                await self._stop(proc)
        finally:
            await reap(proc)
            self._proc = None
            self._sweep_unlisted()
        if self._killed_for_restriction or self.restricted:
            # ffmpeg may have closed one more segment between the wipe and its death.
            self._killed_for_restriction = False
            self.segments.clear()
            ringbuffer.wipe(self.buffer_dir)
            await self._notify()
            return None
        if self.state == "stalled":
            self.stalls += 1
        else:
            self.failures += 1
            self.state = "exited" if proc.returncode == 0 else "failed"
        detail = redact(" | ".join(self._stderr), self._secrets)
        self.last_error = f"{self.state} (exit {proc.returncode})"
        log.warning("camera recorder %s (ffmpeg exit %s)", self.state, proc.returncode)
        log.debug("ffmpeg said: %s", detail)
        return delivered

    async def _read_segments(self, proc: asyncio.subprocess.Process) -> bool:
        assert proc.stdout is not None
        delivered = False
        first_deadline = self.settings.stall_s + self.settings.segment_s
        while True:
            try:
                async with asyncio.timeout(self.settings.stall_s if delivered else first_deadline):
                    line = await proc.stdout.readline()
            except TimeoutError:
                if not self.restricted:
                    self.state = "stalled"
                return delivered
            if not line:
                return delivered  # ffmpeg exited (camera dropped, garbage input, killed)
            if len(line) > 512:
                continue
            parsed = parse_segment_line(line)
            if parsed is None:
                continue
            name, index, duration = parsed
            if self.restricted:
                (self.buffer_dir / name).unlink(missing_ok=True)
                return delivered
            delivered = True
            now = time.time()
            self.segments.append(Segment(index, self.buffer_dir / name, duration, now))
            self._unsmear()
            self._next_index = index + 1
            self.segments_total += 1
            self.last_segment_at = now
            self.state = "recording"
            self._trim()
            await self._notify()

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            # Kept only redacted and bounded: ffmpeg echoes the input URL, credentials included, in its errors.
            self._stderr.append(redact(line[:300].decode(errors="replace").strip(), self._secrets))

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(self.settings.kill_grace_s):
                await proc.wait()
        except TimeoutError:
            # A stuck ffmpeg (blocked in a network read) ignores SIGTERM.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _sweep_unlisted(self) -> None:
        """Removes the segment a dead ffmpeg was still writing: never announced, it would otherwise linger."""
        listed = {segment.path.name for segment in self.segments}
        if not self.buffer_dir.is_dir():
            return
        for entry in self.buffer_dir.glob("seg*.ts"):
            if entry.name not in listed:
                entry.unlink(missing_ok=True)

    def _unsmear(self) -> None:
        """Segments announced in a burst (after start-up analysis) all got the same wall time; walk back from the
        newest so each ends where the next one starts."""
        for i in range(len(self.segments) - 2, -1, -1):
            segment, following = self.segments[i], self.segments[i + 1]
            if segment.end_wall <= following.start_wall + 0.05:
                break
            self.segments[i] = msgspec.structs.replace(segment, end_wall=following.start_wall)

    def _trim(self) -> None:
        """Drops segments older than the pre-roll window unless a clip in progress still needs them."""
        keep_after = time.time() - self.settings.pre_roll_s - 2 * self.settings.segment_s
        pinned = {s.index for c in self._captures for s in c.segments}
        oldest_pin = min(pinned, default=None)
        kept: list[Segment] = []
        for segment in self.segments:
            needed = segment.end_wall >= keep_after or (oldest_pin is not None and segment.index >= oldest_pin)
            if needed:
                kept.append(segment)
            else:
                segment.path.unlink(missing_ok=True)
        self.segments = kept

    async def _notify(self) -> None:
        self.changes.bump()
