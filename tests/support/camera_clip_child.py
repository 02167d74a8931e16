"""Records one clip through the real camera driver and prints it as JSON; run as a child process so a test can
watch every byte it writes (``strace``). Usage: ``python -m tests.support.camera_clip_child URL MAC RING SPOOL
RECIPIENT``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

from drivers.camera.driver import CameraConfig, CameraDriver, CameraDriverConfig
from gateway.model import Clip
from tests.support.camera import spool_context
from tests.support.recording_hub import RecordingHub


class _NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


async def record(url: str, mac: str, ring: Path, spool: Path, recipient: str) -> Clip:
    camera = CameraConfig(
        name="traced", stream_url=url, native_id=mac, pre_roll_s=1.5, post_roll_s=1.5, segment_s=1.0, stall_s=5.0
    )
    config = CameraDriverConfig(mdns=False, wsdiscovery=False, buffer_dir=str(ring), cameras=[camera])
    driver = CameraDriver(config, _NoCredentials(), spool_context(spool, [recipient]))
    async with asyncio.TaskGroup() as tg:
        running = tg.create_task(driver.run(RecordingHub()))
        await driver.wait_ready(10)
        device = f"camera:{mac.lower()}"
        await driver.recorder(device).wait_until(lambda r: r.segments_total >= 2, 20)
        clip = await driver.record_clip(device, "manual")
        running.cancel()
    return clip


def main() -> None:
    url, mac, ring, spool, recipient = sys.argv[1:6]
    clip = asyncio.run(record(url, mac, Path(ring), Path(spool), recipient))
    sys.stdout.write(msgspec.json.encode(clip).decode() + "\n")


if __name__ == "__main__":
    main()
