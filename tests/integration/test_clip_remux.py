"""The clip remux (drivers/camera/remux.py) with the real ffmpeg: MPEG-TS segments as the recorder writes them become
a fragmented MP4 a browser plays, streams copied; an aborted, garbage or empty clip is never passed off as a whole
MP4, and no ffmpeg is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from drivers.camera.recorder import ClipFeed
from drivers.camera.remux import (
    COPY_AAC,
    COPY_HEVC,
    COPY_VIDEO,
    ENCODE_AAC,
    PROBE_BYTES,
    Remux,
    RemuxError,
    StreamArgs,
    command,
    ffprobe_beside,
    stream_args,
)
from gateway.errors import ClipAborted

SEG_S, SEGMENTS = 1.0, 4


def cut_segments(ring: Path, video: list[str]) -> list[Path]:
    """Four 1 s MPEG-TS segments (``video`` as the camera encodes it, AAC audio) cut by ffmpeg's segment muxer, as the
    recorder's ring holds them."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={SEG_S * SEGMENTS:g}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={SEG_S * SEGMENTS:g}",
         *video, "-pix_fmt", "yuv420p", "-g", "10", "-c:a", "aac",
         "-f", "segment", "-segment_time", f"{SEG_S:g}", "-segment_format", "mpegts", str(ring / "seg%03d.ts")],
        check=True, timeout=60,
    )  # fmt: skip
    found = sorted(ring.glob("seg*.ts"))
    assert len(found) == SEGMENTS
    return found


H264: list[str] = ["-c:v", "libx264", "-preset", "ultrafast"]
# Debian's ffmpeg has libx265; log-level=error keeps its banner out of the test's output.
H265: list[str] = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"]


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """H.264 segments, as most cameras send."""
    return cut_segments(tmp_path_factory.mktemp("ring"), H264)


@pytest.fixture(scope="module")
def hevc_segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """H.265 segments, as a camera set to HEVC sends (Hikvision, Reolink, Axis offer it)."""
    return cut_segments(tmp_path_factory.mktemp("ring265"), H265)


def feed_of(paths: list[Path], *, end: bool = True) -> ClipFeed:
    feed = ClipFeed()
    for path in paths:
        feed.push(path)
    if end:
        feed.end()
    return feed


def ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=duration,format_name:stream=codec_name,codec_type,codec_tag_string",
         "-of", "json", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def wait_fed(mp4: Remux, size: int) -> None:
    """Polls until the pump has handed ``size`` bytes to ffmpeg (so it is mid-clip, waiting for post-roll)."""
    deadline = time.monotonic() + 20
    while mp4.bytes_in < size:
        assert time.monotonic() < deadline, "the pump fed ffmpeg"
        time.sleep(0.01)


def assert_gone(pid: int) -> None:
    # Reaped by Popen.wait: the pid no longer names our child.
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_ts_segments_become_a_fragmented_mp4_with_the_streams_copied(segments: list[Path], tmp_path: Path) -> None:
    with Remux(feed_of(segments)) as mp4:
        data = mp4.read()
        pid = mp4.pid
    assert mp4.audio == COPY_AAC, "the camera's AAC is copied, not re-encoded"
    assert mp4.bytes_in == sum(p.stat().st_size for p in segments)
    assert mp4.bytes_out == len(data)
    assert_gone(pid)
    assert data[4:8] == b"ftyp"
    assert b"mvex" in data[:4096], "empty_moov: the header announces fragments before any sample"
    assert data.count(b"moof") >= SEGMENTS, "a fragment per keyframe"
    out = tmp_path / "clip.mp4"
    out.write_bytes(data)
    probe = ffprobe(out)
    assert probe["format"]["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2"  # type: ignore[index]
    assert abs(float(probe["format"]["duration"]) - SEG_S * SEGMENTS) < 0.5  # type: ignore[index]
    codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}  # type: ignore[attr-defined]
    assert codecs == {"video": "h264", "audio": "aac"}
    tags = {s["codec_type"]: s["codec_tag_string"] for s in probe["streams"]}  # type: ignore[attr-defined]
    assert tags == {"video": "avc1", "audio": "mp4a"}, "H.264 keeps its usual tag"
    # -c:v copy: every decoded frame is bit-identical to the TS's (a lossy re-encode could not be).
    concat = "concat:" + "|".join(str(p) for p in segments)
    assert _frame_hashes(str(out)) == _frame_hashes(concat)


def test_h265_is_tagged_hvc1_which_apple_players_need(hevc_segments: list[Path], tmp_path: Path) -> None:
    with Remux(feed_of(hevc_segments)) as mp4:
        data = mp4.read()
    assert mp4.video == COPY_HEVC and mp4.audio == COPY_AAC
    out = tmp_path / "clip.mp4"
    out.write_bytes(data)
    probe = ffprobe(out)
    streams = {s["codec_type"]: (s["codec_name"], s["codec_tag_string"]) for s in probe["streams"]}  # type: ignore[attr-defined]
    assert streams == {"video": ("hevc", "hvc1"), "audio": ("aac", "mp4a")}
    assert b"hvcC" in data[:4096], "hvc1: the parameter sets are in the sample entry"
    assert abs(float(probe["format"]["duration"]) - SEG_S * SEGMENTS) < 0.5  # type: ignore[index]
    concat = "concat:" + "|".join(str(p) for p in hevc_segments)
    assert _frame_hashes(str(out)) == _frame_hashes(concat), "still a copy, not a re-encode"


def _frame_hashes(source: str) -> list[str]:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", source, "-map", "0:v:0", "-f", "framemd5",
         "-"],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    hashes = [line.rsplit(",", 1)[1].strip() for line in out.stdout.splitlines() if not line.startswith("#")]
    assert len(hashes) >= SEG_S * SEGMENTS * 10 - 1
    return hashes


def test_an_aborted_clip_raises_instead_of_ending_a_short_mp4(segments: list[Path]) -> None:
    assert sum(p.stat().st_size for p in segments[:3]) > PROBE_BYTES, "so ffmpeg starts before the feed ends"
    feed = feed_of(segments[:3], end=False)
    with Remux(feed) as mp4:
        mp4.start()
        wait_fed(mp4, sum(p.stat().st_size for p in segments[:3]))
        feed.abort()
        with pytest.raises(ClipAborted):
            mp4.read()
        pid = mp4.pid
    assert_gone(pid)


def test_an_abort_before_ffmpeg_starts_raises_and_starts_nothing(segments: list[Path]) -> None:
    feed = feed_of(segments[:1], end=False)
    feed.abort()
    with Remux(feed) as mp4, pytest.raises(ClipAborted):
        mp4.read()
    with pytest.raises(AssertionError):
        _ = mp4.pid  # no ffmpeg was started


@pytest.mark.parametrize(("audio", "expected"), [("mp2", ENCODE_AAC), (None, COPY_AAC)], ids=["mp2", "no-audio"])
def test_audio_mp4_cannot_copy_is_encoded_to_aac(tmp_path: Path, audio: str | None, expected: tuple[str, ...]) -> None:
    ts = tmp_path / "cam.ts"
    sound = ["-f", "lavfi", "-i", "sine=duration=2", "-c:a", audio] if audio else []
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=160x120:rate=10:duration=2", *sound, "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-f", "mpegts", str(ts)],
        check=True, timeout=60,
    )  # fmt: skip
    with Remux(feed_of([ts])) as mp4:
        data = mp4.read()
    assert mp4.audio == expected and mp4.video == COPY_VIDEO
    out = tmp_path / "clip.mp4"
    out.write_bytes(data)
    codecs = {s["codec_type"]: s["codec_name"] for s in ffprobe(out)["streams"]}  # type: ignore[attr-defined]
    assert codecs == ({"video": "h264", "audio": "aac"} if audio else {"video": "h264"})


def test_an_ffmpeg_killed_mid_clip_is_an_error_not_a_short_mp4(segments: list[Path]) -> None:
    feed = feed_of(segments[:3], end=False)
    with Remux(feed) as mp4:
        mp4.start()
        wait_fed(mp4, sum(p.stat().st_size for p in segments[:3]))
        os.kill(mp4.pid, signal.SIGKILL)
        feed.push(segments[3])
        feed.end()
        with pytest.raises(RemuxError, match="exit -9"):
            mp4.read()
    assert_gone(mp4.pid)


def test_garbage_is_refused_not_sealed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ts"
    junk.write_bytes(bytes(range(256)) * 4096)
    with Remux(feed_of([junk])) as mp4, pytest.raises(RemuxError):
        mp4.read()


def test_an_empty_clip_is_an_empty_stream() -> None:
    with Remux(feed_of([])) as mp4:
        assert mp4.read() == b""


def test_closing_early_kills_ffmpeg_even_while_the_feed_waits_for_post_roll(segments: list[Path]) -> None:
    feed = feed_of(segments[:3], end=False)
    mp4 = Remux(feed)
    mp4.start()
    wait_fed(mp4, sum(p.stat().st_size for p in segments[:3]))
    mp4.close()
    assert_gone(mp4.pid)
    feed.abort()  # what the recorder's release() does; the pump thread ends with it


def test_the_command_copies_and_writes_fragmented_mp4_to_a_pipe() -> None:
    args = command("/usr/bin/ffmpeg")
    assert args[0] == "/usr/bin/ffmpeg"
    assert args[args.index("-c:v") + 1] == "copy", "the video is never re-encoded"
    assert "-tag:v" not in args, "H.264's tag is the muxer's default"
    hevc = command("/usr/bin/ffmpeg", video=COPY_HEVC)
    assert hevc[hevc.index("-c:v") + 1] == "copy" and hevc[hevc.index("-tag:v") + 1] == "hvc1"
    assert args[args.index("-movflags") + 1] == "frag_keyframe+empty_moov+default_base_moof"
    assert args[-1] == "pipe:1" and "pipe:0" in args


def test_without_a_working_ffprobe_audio_is_encoded_and_video_copied_which_always_works(
    segments: list[Path], hevc_segments: list[Path]
) -> None:
    assert stream_args(segments[0].read_bytes()) == StreamArgs(COPY_VIDEO, COPY_AAC)
    assert stream_args(hevc_segments[0].read_bytes()) == StreamArgs(COPY_HEVC, COPY_AAC)
    assert stream_args(hevc_segments[0].read_bytes(), ffprobe="/nonexistent/ffprobe") == StreamArgs(
        COPY_VIDEO, ENCODE_AAC
    )


def test_ffprobe_is_found_beside_the_configured_ffmpeg() -> None:
    assert ffprobe_beside("/opt/ff/bin/ffmpeg") == "/opt/ff/bin/ffprobe"
    assert ffprobe_beside("ffmpeg") == "ffprobe"
    assert ffprobe_beside("/usr/local/bin/avconv") == "ffprobe"
