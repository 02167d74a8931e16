"""Clips recorded by the real pipeline: simulated camera (real ffmpeg over HTTP on loopback) → ffmpeg segmenter
into a tmpfs ring → age encryption → decryption with a household identity → ffprobe. Plus supervision: a stalled,
garbage-sending or restricted camera."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from drivers.base import RecordsClips
from drivers.camera.driver import CameraConfig, CameraDriver, CameraDriverConfig
from drivers.camera.ffmpeg import FfmpegVersion, detect
from drivers.camera.recorder import Recorder, RecorderSettings
from gateway.errors import ClipAborted, DecryptError
from gateway.model import Category, Clip
from gateway.store.clips import decrypt_clip
from kotihub_tools.simulators.camera import MARKER, Mode, SimulatedCamera
from tests.support.camera import Member, make_member, spool_context
from tests.support.recording_hub import RecordingHub

PRE, POST, SEG = 2.0, 2.0, 1.0


class Credentials:
    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    def get(self, name: str) -> bytes | None:
        self.asked.append(name)
        return self.secrets.get(name)


def assert_no_personal_data_logged(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    assert caplog.records, "the pipeline logged something, so the scan below is meaningful"
    for record in caplog.records:
        message = record.getMessage()
        for secret in secrets:
            assert secret not in message
        if record.levelno >= logging.INFO:
            assert "127.0.0.1" not in message and "://" not in message, message


def ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=duration,format_name:stream=codec_name,codec_tag_string,width,height",
         "-of", "json", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _driver_config(cam: SimulatedCamera, ram_dir: Path, pre: float = PRE, post: float = POST) -> CameraDriverConfig:
    return CameraDriverConfig(
        mdns=False,
        wsdiscovery=False,
        buffer_dir=str(ram_dir / "ring"),
        cameras=[
            CameraConfig(
                name="hall",
                stream_url=cam.stream_url,
                username="viewer",
                native_id=cam.mac,
                pre_roll_s=pre,
                post_roll_s=post,
                segment_s=SEG,
                stall_s=4.0,
            )
        ],
    )


def test_clip_is_recorded_sealed_and_plays_for_the_household(
    tmp_path: Path, ram_dir: Path, member: Member, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spool = tmp_path / "spool"
    credentials = Credentials({"camera.password.hall": b"s3cret/pass\n"})
    hub = RecordingHub()

    async def main() -> tuple[Clip, Clip]:
        async with SimulatedCamera(mdns_enabled=False, credentials=("viewer", "s3cret/pass")) as cam:
            context = spool_context(spool, [member.recipient])
            driver = CameraDriver(_driver_config(cam, ram_dir), credentials, context)
            assert isinstance(driver, RecordsClips)
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(hub))
                await driver.wait_ready(10)
                device = cam.device_id_by_mac
                recorder = driver.recorder(device)
                await recorder.wait_until(lambda r: r.segments_total >= 3, 20)
                # A smoke detector's alarm (not a camera id) records every camera.
                (clip,) = await driver.record_clips("mqtt:0x00158d0001a2b3c4", "smoke")
                assert clip.device_id == device
                snapshot, snapshot_path = await driver.record_snapshot(device, "manual")
                assert snapshot_path == spool / f"{snapshot.clip_id}.age"
                health = driver.health()
                assert health.clips_sealed == 1
                assert health.cameras[device].state == "recording"
                running.cancel()
            assert [d.device_id for d in hub.devices] == [device]
            assert cam.connections >= 1, "the stream was served only after Basic auth with the stored password"
            assert not (ram_dir / "ring").exists() or not any((ram_dir / "ring").rglob("*.ts"))
            return clip, snapshot

    clip, snapshot = asyncio.run(main())
    assert_no_personal_data_logged(caplog, "s3cret", "viewer")
    assert credentials.asked == ["camera.password.hall"]
    # Handed to the hub while still ``.age.tmp``; renamed into the spool only by the hub.
    assert hub.sealed == [(c, spool / f"{c.clip_id}.age.tmp") for c in (clip, snapshot)]
    assert sorted(p.name for p in spool.iterdir()) == sorted(f"{c.clip_id}.age" for c in (clip, snapshot))
    image = tmp_path / "household" / "snapshot.jpg"
    decrypt_clip(member.identity_file, spool / f"{snapshot.clip_id}.age", image, expected_sha256=snapshot.sha256)
    assert image.read_bytes()[:2] == b"\xff\xd8" and snapshot.duration_s == 0.0
    still = ffprobe(image)["streams"][0]  # type: ignore[index]
    assert (still["codec_name"], still["width"], still["height"]) == ("mjpeg", 160, 120)
    ciphertext = (spool / f"{clip.clip_id}.age").read_bytes()
    assert MARKER not in ciphertext
    assert clip.reason == "smoke" and clip.size == len(ciphertext)

    out = tmp_path / "household" / "clip.mp4"
    decrypt_clip(member.identity_file, spool / f"{clip.clip_id}.age", out, expected_sha256=clip.sha256)
    plaintext = out.read_bytes()
    assert MARKER in plaintext, "the marker was really in the stream, so its absence above means something"
    # What a browser's <video> plays: fragmented MP4, header first.
    assert plaintext[4:8] == b"ftyp" and b"moof" in plaintext
    probe = ffprobe(out)
    assert probe["format"]["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2"  # type: ignore[index]
    duration = float(probe["format"]["duration"])  # type: ignore[index]
    assert PRE + POST - 0.5 <= duration <= PRE + POST + 2 * SEG + 0.5
    assert abs(duration - clip.duration_s) < 0.5
    stream = probe["streams"][0]  # type: ignore[index]
    assert (stream["codec_name"], stream["codec_tag_string"], stream["width"], stream["height"]) == (
        "h264",
        "avc1",
        160,
        120,
    )


def test_an_h265_camera_records_clips_tagged_hvc1_for_apple_players(
    tmp_path: Path, ram_dir: Path, member: Member
) -> None:
    """A camera set to H.265: its clips are copied, never re-encoded, and tagged ``hvc1`` (not ffmpeg's default
    ``hev1``, which Safari, QuickTime and HomeKit refuse)."""
    spool = tmp_path / "spool"

    async def main() -> Clip:
        async with SimulatedCamera(mdns_enabled=False, codec="hevc") as cam:
            context = spool_context(spool, [member.recipient])
            driver = CameraDriver(_driver_config(cam, ram_dir, pre=1.0, post=1.0), Credentials({}), context)
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(RecordingHub()))
                await driver.wait_ready(10)
                device = cam.device_id_by_mac
                await driver.recorder(device).wait_until(lambda r: r.segments_total >= 2, 20)
                clip = await driver.record_clip(device, "motion")
                running.cancel()
        return clip

    clip = asyncio.run(main())
    out = tmp_path / "household" / "clip.mp4"
    decrypt_clip(member.identity_file, spool / f"{clip.clip_id}.age", out, expected_sha256=clip.sha256)
    probe = ffprobe(out)
    assert probe["format"]["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2"  # type: ignore[index]
    streams: list[dict[str, object]] = probe["streams"]  # type: ignore[assignment]
    assert len(streams) == 1, "video only, as the camera sends"
    stream = streams[0]
    assert (stream["codec_name"], stream["codec_tag_string"], stream["width"], stream["height"]) == (
        "hevc",
        "hvc1",
        160,
        120,
    )


def test_a_removed_member_cannot_open_new_clips(tmp_path: Path, ram_dir: Path, member: Member) -> None:
    other = make_member(tmp_path / "household", "other")
    spool = tmp_path / "spool"

    async def main() -> tuple[Clip, Clip]:
        async with SimulatedCamera(mdns_enabled=False) as cam:
            recipients = [member.recipient, other.recipient]
            context = spool_context(spool, recipients)
            driver = CameraDriver(_driver_config(cam, ram_dir, pre=1.0, post=1.0), Credentials({}), context)
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(RecordingHub()))
                await driver.wait_ready(10)
                device = cam.device_id_by_mac
                await driver.recorder(device).wait_until(lambda r: r.segments_total >= 2, 20)
                before = await driver.record_clip(device, "motion")
                recipients.remove(other.recipient)  # a new member list without the other member
                after = await driver.record_clip(device, "motion")
                running.cancel()
        return before, after

    before, after = asyncio.run(main())
    for who in (member, other):
        decrypt_clip(who.identity_file, spool / f"{before.clip_id}.age", io.BytesIO())
    decrypt_clip(member.identity_file, spool / f"{after.clip_id}.age", io.BytesIO())
    with pytest.raises(DecryptError):
        decrypt_clip(other.identity_file, spool / f"{after.clip_id}.age", io.BytesIO())


def test_restriction_aborts_a_clip_and_stops_recording_at_once(tmp_path: Path, ram_dir: Path, member: Member) -> None:
    spool = tmp_path / "spool"

    async def main() -> None:
        async with SimulatedCamera(mdns_enabled=False) as cam:
            context = spool_context(spool, [member.recipient])
            driver = CameraDriver(_driver_config(cam, ram_dir), Credentials({}), context)
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(RecordingHub()))
                await driver.wait_ready(10)
                device = cam.device_id_by_mac
                recorder = driver.recorder(device)
                await recorder.wait_until(lambda r: r.segments_total >= 2, 20)
                clip_task = tg.create_task(_aborted(driver.record_clip(device, "alarm")))
                await recorder.wait_until(lambda r: r.health().clips_in_progress == 1, 5)
                driver.restriction_changed(frozenset({Category.CAMERA}))
                assert await clip_task, "the clip in progress was aborted"
                await recorder.wait_until(lambda r: r.state == "restricted" and not r.running, 5)
                assert not any(recorder.buffer_dir.glob("*.ts")), "pre-roll plaintext is wiped on restriction"
                with pytest.raises(ClipAborted):
                    await driver.record_clip(device, "manual")
                total = recorder.segments_total
                driver.restriction_changed(frozenset())
                await recorder.wait_until(lambda r: r.segments_total > total, 20)
                assert driver.health().clips_aborted == 2
                running.cancel()

    asyncio.run(main())
    assert not spool.exists() or list(spool.iterdir()) == []


async def _aborted(clip: Coroutine[Any, Any, Clip]) -> bool:
    try:
        await clip
    except ClipAborted:
        return True
    return False


async def _recorder(cam: SimulatedCamera, ram_dir: Path, *, stall_s: float = 1.5) -> Recorder:
    settings = RecorderSettings(segment_s=SEG, pre_roll_s=PRE, post_roll_s=POST, stall_s=stall_s, backoff_initial_s=0.2)
    return Recorder(
        device_id=cam.device_id_by_mac,
        url=cam.stream_url.replace("http://", "http://viewer:s3cret@"),
        settings=settings,
        buffer_dir=ram_dir / "ring",
        version=await detect(),
    )


@pytest.mark.parametrize("mode", ["stall", "garbage", "refuse"])
def test_a_stalled_garbage_or_dropping_camera_is_restarted_and_recovers(
    ram_dir: Path, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with SimulatedCamera(mdns_enabled=False, stall_after_s=0.3) as cam:
            cam.mode = mode
            # Garbage and a refused connection must be seen as ffmpeg failing, not stalling: on a loaded machine
            # ffmpeg can take more than 1.5 s to give up on garbage, so only the stall case gets the short deadline.
            recorder = await _recorder(cam, ram_dir, stall_s=1.5 if mode == "stall" else 10.0)
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(recorder.run())
                if mode == "stall":
                    await recorder.wait_until(lambda r: r.stalls >= 1 and r.restarts >= 1, 15)
                    assert recorder.health().last_error.startswith("stalled")
                else:
                    await recorder.wait_until(lambda r: r.failures >= 2 and r.restarts >= 2, 30)
                    assert recorder.health().last_error.startswith("failed")
                assert recorder.segments_total == 0
                connections = cam.connections
                assert connections >= 2 or mode == "stall"
                cam.mode = "ok"
                await recorder.wait_until(lambda r: r.state == "recording", 20)
                assert recorder.health().segments_buffered >= 1
                assert cam.connections > connections
                assert "s3cret" not in repr(recorder.health())
                running.cancel()

    asyncio.run(main())
    assert_no_personal_data_logged(caplog, "s3cret")


def test_a_stuck_ffmpeg_that_ignores_sigterm_is_killed(tmp_path: Path, ram_dir: Path) -> None:
    stuck = tmp_path / "stuck-ffmpeg"
    stuck.write_text("#!/bin/sh\ntrap '' TERM\nexec sleep 30\n")  # SIG_IGN survives exec
    stuck.chmod(0o755)
    settings = RecorderSettings(segment_s=0.5, stall_s=0.5, backoff_initial_s=30.0, kill_grace_s=0.5, ffmpeg=str(stuck))
    recorder = Recorder(
        device_id="camera:stuck",
        url="http://127.0.0.1:9/never",
        settings=settings,
        buffer_dir=ram_dir / "ring",
        version=FfmpegVersion(5, 1, 59),
    )

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(recorder.run())
            await recorder.wait_until(lambda r: r.stalls >= 1, 15)
            assert not recorder.running
            assert recorder.last_error == "stalled (exit -9)", "SIGTERM was ignored, so it took SIGKILL"
            assert recorder.state.startswith("backoff")
            running.cancel()

    asyncio.run(main())


def test_a_wrong_password_is_refused_by_the_camera(ram_dir: Path) -> None:
    """The other half of the credentials check above: the simulator really enforces Basic auth."""

    async def main() -> None:
        async with SimulatedCamera(mdns_enabled=False, credentials=("viewer", "right")) as cam:
            settings = RecorderSettings(segment_s=SEG, stall_s=1.5, backoff_initial_s=0.2)
            recorder = Recorder(
                device_id=cam.device_id_by_mac,
                url=cam.stream_url.replace("http://", "http://viewer:wrong@"),
                settings=settings,
                buffer_dir=ram_dir / "ring",
                version=await detect(),
            )
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(recorder.run())
                await recorder.wait_until(lambda r: r.failures >= 1, 10)
                running.cancel()
            assert cam.unauthorised >= 1
            assert cam.connections == 0
            assert recorder.segments_total == 0

    asyncio.run(main())
