"""The recorder's pure parts: ffmpeg version and flags, redaction, segment lines, pre-roll choice, tmpfs check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.camera import ffmpeg, ringbuffer
from drivers.camera.recorder import Segment, parse_segment_line, select_pre_roll
from gateway.errors import PermanentError

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "camera"
VERSIONS: list[dict[str, Any]] = json.loads((VECTORS / "ffmpeg_version.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VERSIONS, ids=lambda v: v["text"].split(" ")[2])
def test_ffmpeg_version_golden(vector: dict[str, Any]) -> None:
    assert vector["source"]
    version = ffmpeg.parse_version(vector["text"])
    expected = vector["expected"]
    if expected is None:
        assert version is None
        return
    assert version is not None
    assert (version.major, version.minor, version.libavformat) == (
        expected["major"],
        expected["minor"],
        expected["libavformat"],
    )
    assert version.rtsp_timeout_flag == expected["rtsp_timeout_flag"]


def test_installed_ffmpeg_is_detected_with_the_flags_it_takes() -> None:
    import asyncio

    version = asyncio.run(ffmpeg.detect())
    banner = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
    assert banner.startswith(f"ffmpeg version {version.major}.{version.minor}")
    args = ffmpeg.input_args("rtsp://cam.example/stream", version)
    assert args[-2:] == ["-i", "rtsp://cam.example/stream"]
    assert version.rtsp_timeout_flag in args and "-rtsp_transport" in args
    # The flag really exists in this ffmpeg's RTSP demuxer.
    help_text = subprocess.run(
        ["ffmpeg", "-hide_banner", "-h", "demuxer=rtsp"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{version.rtsp_timeout_flag} " in help_text


async def test_reaping_a_child_finishes_even_when_the_reaper_is_cancelled() -> None:
    # CI once failed on an ffmpeg transport left open and its child unreaped: a camera handler cancelled while it
    # was already reaping. The loop that owned the transport was gone when it was collected, and closing it raised.
    import asyncio

    proc = await asyncio.create_subprocess_exec("sleep", "30", stdout=asyncio.subprocess.PIPE)
    reaper = asyncio.create_task(ffmpeg.reap(proc))
    await asyncio.sleep(0)  # one turn: the reaper has killed the child and is waiting for it
    assert proc.returncode is None
    reaper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reaper
    assert proc.returncode == -9
    assert proc.stdout is not None and proc.stdout.at_eof()


def test_http_inputs_get_an_io_timeout_not_rtsp_flags() -> None:
    args = ffmpeg.input_args("http://cam.example/s.ts", ffmpeg.FfmpegVersion(5, 1, 59))
    assert "-rw_timeout" in args and "-rtsp_transport" not in args


def test_redact_removes_urls_and_secrets() -> None:
    line = "[tcp @ 0x55] Connection to tcp://192.168.1.27:554 failed: rtsp://admin:hunter2@192.168.1.27/live hunter2"
    cleaned = ffmpeg.redact(line, ("hunter2",))
    assert "hunter2" not in cleaned and "192.168" not in cleaned and "admin" not in cleaned
    assert "Connection to <url> failed" in cleaned


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"seg0000000042.ts,84.000000,86.000000\n", ("seg0000000042.ts", 42, 2.0)),
        (b"seg0000000000.ts,0.000000,1.040000\n", ("seg0000000000.ts", 0, 1.04)),
        (b"../etc/passwd,0.0,1.0\n", None),
        (b"seg0000000001.ts,5.0,4.0\n", None),
        (b"seg42.ts,0.0,1.0\n", None),
        (b"\xff\xfe\n", None),
        (b"", None),
    ],
)
def test_segment_line(line: bytes, expected: tuple[str, int, float] | None) -> None:
    parsed = parse_segment_line(line)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert parsed[:2] == expected[:2] and parsed[2] == pytest.approx(expected[2])


@given(st.binary(max_size=80))
def test_segment_line_parser_is_total(line: bytes) -> None:
    parsed = parse_segment_line(line)
    assert parsed is None or parsed[0].startswith("seg")


def test_pre_roll_selects_the_segments_overlapping_the_window() -> None:
    segments = [Segment(i, Path(f"seg{i}.ts"), 2.0, 100.0 + 2 * i) for i in range(6)]  # ends 100..110
    chosen = select_pre_roll(segments, trigger=107.0, pre_roll_s=4.0)
    # Window [103, 107]: segments ending 104 (102-104), 106 (104-106), 108 (106-108).
    assert [s.index for s in chosen] == [2, 3, 4]
    assert select_pre_roll(segments, trigger=200.0, pre_roll_s=4.0) == []
    assert select_pre_roll([], trigger=107.0, pre_roll_s=4.0) == []


# From proc(5), "/proc/pid/mountinfo" example line, plus lines in the same format for a Raspberry Pi-like layout.
MOUNTINFO = """\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
21 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
24 21 0:6 / /dev rw,relatime shared:2 - devtmpfs devtmpfs rw,size=1800000k
25 24 0:23 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
27 21 0:25 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=400000k,mode=755
40 21 179:1 / /boot/firm\\040ware rw,relatime shared:7 - vfat /dev/mmcblk0p1 rw
41 21 179:2 /var/lib /var/lib/kotihub rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/dev/shm/kotihub-1000/camera", "tmpfs"),
        ("/run/kotihub/camera", "tmpfs"),
        ("/var/lib/kotihub/spool", "ext4"),
        ("/dev/shmother", "devtmpfs"),
        ("/boot/firm ware/x", "vfat"),
        ("/mnt2/a", "ext3"),
        ("/home/pi", "ext4"),
    ],
)
def test_fs_type_of(path: str, fstype: str) -> None:
    assert ringbuffer.fs_type_of(path, MOUNTINFO) == fstype


def test_fs_type_of_is_total() -> None:
    assert ringbuffer.fs_type_of("/x", "") is None
    assert ringbuffer.fs_type_of("/x", "garbage\n1 2\n - \n") is None


def test_prepare_refuses_a_disk_directory_and_wipes_a_ram_one(tmp_path: Path, ram_dir: Path) -> None:
    assert not ringbuffer.is_ram_backed(tmp_path), "pytest's tmp_path is on disk on this machine"
    with pytest.raises(PermanentError, match="not on tmpfs"):
        ringbuffer.prepare(tmp_path / "ring")
    ring = ram_dir / "ring"
    ring.mkdir()
    (ring / "seg0000000001.ts").write_bytes(b"left by a crash")
    assert ringbuffer.prepare(ring) == ring
    assert list(ring.iterdir()) == []
    assert ring.stat().st_mode & 0o777 == 0o700


@pytest.mark.timeout(20)  # before the fix this spun without yielding; the signal timeout turns that into a failure
async def test_a_clip_with_only_stale_segments_buffered_waits_instead_of_spinning(tmp_path: Path) -> None:
    import asyncio
    import time

    from drivers.camera.ffmpeg import FfmpegVersion
    from drivers.camera.recorder import Recorder, RecorderSettings

    settings = RecorderSettings(segment_s=0.1, pre_roll_s=2.0, post_roll_s=1.0, stall_s=0.2)
    recorder = Recorder(
        device_id="camera:x", url="http://127.0.0.1:9/", settings=settings, buffer_dir=tmp_path,
        version=FfmpegVersion(5, 1, 59), require_ram=False,
    )  # fmt: skip
    trigger = time.time()
    stale = tmp_path / "seg0000000000.ts"
    stale.write_bytes(b"\0" * 188)
    # The camera went quiet long ago: its last segment lies before the pre-roll window.
    recorder.segments.append(Segment(index=0, path=stale, duration=0.1, end_wall=trigger - 8))
    capture = recorder.start_capture("smoke", trigger)
    assert capture.segments == []
    await asyncio.wait_for(capture.complete(), timeout=5)
    assert capture.truncated
    assert capture.segments == []
