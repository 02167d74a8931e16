"""Discovery of a simulated camera over real mDNS (zeroconf on 127.0.0.1) and real WS-Discovery multicast on
loopback, through the parsers and the driver's ``discover``."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from drivers.camera import mdns, wsdiscovery
from drivers.camera.driver import CameraConfig, CameraDriver, CameraDriverConfig
from drivers.camera.recorder import Changes
from gateway.model import DeviceInfo, DeviceKind
from kotihub_tools.simulators.camera import SimulatedCamera

# Addresses and names unique to this test process: multicast on 127.0.0.1 is shared by every process on the
# machine, so two test runs at once would otherwise see each other's cameras under the same ids.
_RUN = os.getpid() & 0xFFFF
BULB = f"Bulb-{_RUN:04x}.{mdns.HOMEKIT}"


def mac(n: int) -> str:
    return f"00:40:8c:{_RUN >> 8:02x}:{_RUN & 0xFF:02x}:{n:02x}"


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


async def wait_for_camera(device_id: str, service_type: str, timeout: float) -> mdns.CameraAnnouncement:
    """Browses until ``device_id`` is announced (event-driven, no fixed wait)."""
    found: asyncio.Future[mdns.CameraAnnouncement] = asyncio.get_running_loop().create_future()

    async def on_camera(camera: mdns.CameraAnnouncement) -> None:
        if camera.device_id == device_id and not found.done():
            found.set_result(camera)

    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(mdns.watch(on_camera, interfaces=["127.0.0.1"], service_types=[service_type]))
        try:
            async with asyncio.timeout(timeout):
                return await found
        finally:
            watcher.cancel()


def test_mdns_finds_the_simulated_axis_camera() -> None:
    async def main() -> tuple[mdns.CameraAnnouncement, int]:
        async with SimulatedCamera(mac=mac(1)) as cam:
            return await wait_for_camera(f"camera:{mac(1)}", mdns.AXIS, 10), cam.http_port

    camera, port = asyncio.run(main())
    assert camera.service_type == mdns.AXIS
    assert camera.model == "Sim Camera"
    assert camera.port == port
    assert "127.0.0.1" in camera.addresses


def test_wsdiscovery_probe_over_loopback_multicast() -> None:
    async def main() -> tuple[list[wsdiscovery.ProbeMatch], SimulatedCamera]:
        async with SimulatedCamera(mdns_enabled=False) as cam:
            matches = await wsdiscovery.probe(target=cam.wsd_target, interface="127.0.0.1", timeout=1.5, repeats=2)
            assert cam.probes >= 1
            return matches, cam

    matches, cam = asyncio.run(main())
    assert [m.device_id for m in matches] == [cam.device_id_by_uuid]
    (match,) = matches
    # The simulator answers with 0.0.0.0 like some real cameras; the host comes from the reply's source.
    assert match.xaddrs == (f"http://127.0.0.1:{cam.http_port}/onvif/device_service",)
    assert match.name == "Sim Camera"
    assert match.is_video


def test_driver_discover_merges_both_mechanisms() -> None:
    async def main() -> None:
        async with SimulatedCamera(mac=mac(2)) as cam:
            config = CameraDriverConfig(
                wsdiscovery_target=f"{cam.wsd_target[0]}:{cam.wsd_target[1]}", interface="127.0.0.1"
            )
            driver = CameraDriver(config, NoCredentials())
            found = {d.device_id: d for d in await driver.discover(3.0)}
            assert f"camera:{mac(2)}" in found
            assert cam.device_id_by_uuid in found
            assert found[cam.device_id_by_uuid].address == "127.0.0.1"
            assert all(d.driver == "camera" for d in found.values())

    asyncio.run(main())


def test_mdns_homekit_cameras_only() -> None:
    """A HomeKit camera (ci=17) is found over the wire; a HomeKit lightbulb (ci=5) on the same link is resolved
    and ignored."""

    async def main() -> tuple[list[mdns.CameraAnnouncement], list[str]]:
        cameras: list[mdns.CameraAnnouncement] = []
        ignored: list[str] = []
        changes = Changes()

        async def on_camera(camera: mdns.CameraAnnouncement) -> None:
            cameras.append(camera)
            changes.bump()

        def on_ignored(name: str) -> None:
            ignored.append(name)
            changes.bump()

        bulb_zc = AsyncZeroconf(interfaces=["127.0.0.1"])
        bulb = ServiceInfo(
            mdns.HOMEKIT,
            BULB,
            addresses=[socket.inet_aton("127.0.0.1")],
            port=8080,
            properties={"c#": "2", "id": "11:22:33:44:55:66", "md": "LCT015", "ci": "5", "sf": "0"},
            server="bulb.local.",
        )
        try:
            await bulb_zc.async_register_service(bulb)
            async with SimulatedCamera(mac=mac(3), homekit=True, name=f"Sim {_RUN:04x}"), asyncio.TaskGroup() as tg:
                watcher = tg.create_task(
                    mdns.watch(on_camera, interfaces=["127.0.0.1"], service_types=[mdns.HOMEKIT], on_ignored=on_ignored)
                )
                await changes.wait_for(
                    lambda: any(c.device_id == f"camera:{mac(3)}" for c in cameras) and BULB in ignored, 10
                )
                watcher.cancel()
        finally:
            await bulb_zc.async_unregister_all_services()
            await bulb_zc.async_close()
        return cameras, ignored

    cameras, ignored = asyncio.run(main())
    # Another test run's simulated camera and bulb may share the link; everything else seen is judged.
    cameras = [c for c in cameras if not (c.model == "SIM-HK" and c.device_id != f"camera:{mac(3)}")]
    ignored = [n for n in ignored if not (n.startswith("Bulb-") and n != BULB)]
    assert {(c.device_id, c.category, c.model) for c in cameras} == {(f"camera:{mac(3)}", "ip_camera", "SIM-HK")}
    assert set(ignored) == {BULB}


class RecordingHub:
    """The driver-facing hub port, recording devices and waking waiters when one is seen."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}
        self.changes = Changes()

    async def device_seen(self, info: DeviceInfo) -> None:
        self.devices[info.device_id] = info
        self.changes.bump()

    async def readings(self, readings: object) -> None:
        raise AssertionError("cameras report no readings")

    async def event(self, event: object) -> None:
        raise AssertionError("not expected")

    async def clip_requested(self, device_id: str, reason: str) -> None:
        raise AssertionError("not expected")


def test_running_driver_reports_discovered_cameras_to_the_hub(ram_dir: Path) -> None:
    async def main() -> None:
        async with SimulatedCamera(mac=mac(4)) as cam:
            config = CameraDriverConfig(
                wsdiscovery_target=f"{cam.wsd_target[0]}:{cam.wsd_target[1]}",
                interface="127.0.0.1",
                buffer_dir=str(ram_dir / "ring"),
            )
            driver = CameraDriver(config, NoCredentials())
            hub = RecordingHub()
            wanted = {f"camera:{mac(4)}", cam.device_id_by_uuid}
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(hub))
                await hub.changes.wait_for(lambda: wanted <= hub.devices.keys(), 15)
                running.cancel()
            assert all(hub.devices[d].kind is DeviceKind.CAMERA for d in wanted)
            assert hub.devices[cam.device_id_by_uuid].address == "127.0.0.1"
            assert driver.health().discovery_errors == {}

    asyncio.run(main())


def test_failing_discovery_does_not_stop_recording(ram_dir: Path) -> None:
    async def main() -> None:
        async with SimulatedCamera(mdns_enabled=False) as cam:
            config = CameraDriverConfig(
                mdns=False,
                # Not an address of this host: binding the probe socket fails every time.
                interface="192.0.2.1",
                buffer_dir=str(ram_dir / "ring"),
                cameras=[CameraConfig(name="hall", stream_url=cam.stream_url, native_id=cam.mac, segment_s=1.0)],
            )
            driver = CameraDriver(config, NoCredentials())
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(driver.run(RecordingHub()))
                await driver.wait_ready(10)
                recorder = driver.recorder(cam.device_id_by_mac)
                await recorder.wait_until(lambda r: r.segments_total >= 1, 20)
                assert driver.health().discovery_errors == {"wsdiscovery": 1}
                assert not running.done()
                running.cancel()

    asyncio.run(main())
