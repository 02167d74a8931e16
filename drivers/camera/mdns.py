"""Camera discovery over mDNS/DNS-SD with zeroconf's asyncio API.

Three service types: ``_axis-video._tcp`` (Axis, DoorBird; TXT ``macaddress``), ``_hap._tcp`` (HomeKit; only TXT
``ci`` 17 = IP camera and 18 = video doorbell; TXT ``id`` is the accessory's stable device id) and ``_rtsp._tcp``.
:func:`parse_service` is pure and total: announcements are untrusted LAN input and bad ones give ``None``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import msgspec
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from gateway.model import device_id

log = logging.getLogger(__name__)

AXIS: Final = "_axis-video._tcp.local."
HOMEKIT: Final = "_hap._tcp.local."
RTSP: Final = "_rtsp._tcp.local."
SERVICE_TYPES: Final = (AXIS, HOMEKIT, RTSP)
HOMEKIT_CAMERA_CATEGORIES: Final = {17: "ip_camera", 18: "video_doorbell"}
RESOLVE_TIMEOUT_MS: Final = 3000
_MAX_TXT_VALUE: Final = 255
_MAC = re.compile(r"^[0-9a-f]{12}$")
_NAME_ID = re.compile(r"[^a-z0-9]+")


class CameraAnnouncement(msgspec.Struct, frozen=True, kw_only=True):
    """A camera heard over mDNS."""

    device_id: str
    native_id: str
    service_type: str
    instance: str
    model: str = ""
    category: str = "camera"
    addresses: tuple[str, ...] = ()
    """Personal data (where the camera is on the LAN); never logged at INFO."""
    port: int = 0


def _txt(properties: Mapping[bytes, bytes | None], key: str) -> str:
    raw = properties.get(key.encode())
    if raw is None:
        return ""
    try:
        return raw[:_MAX_TXT_VALUE].decode("utf-8").strip()
    except UnicodeDecodeError:
        return ""


def normalise_mac(text: str) -> str | None:
    """``00408C123456`` / ``00:40:8c:12:34:56`` / ``00-40-...`` → ``00:40:8c:12:34:56``; ``None`` if not a MAC."""
    bare = re.sub(r"[:\-.]", "", text.strip().lower())
    if not _MAC.match(bare):
        return None
    return ":".join(bare[i : i + 2] for i in range(0, 12, 2))


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


def _instance(name: str, service_type: str) -> str:
    return name[: -len(service_type) - 1] if name.endswith("." + service_type) else name


def parse_service(
    service_type: str,
    name: str,
    properties: Mapping[bytes, bytes | None],
    addresses: Sequence[str] = (),
    port: int = 0,
) -> CameraAnnouncement | None:
    """A camera from a resolved DNS-SD service, or ``None`` if it is not one (or not identifiable). Never raises."""
    try:
        return _parse_service(service_type, name, properties, addresses, port)
    except (AttributeError, TypeError, ValueError):
        return None


def _parse_service(
    service_type: str,
    name: str,
    properties: Mapping[bytes, bytes | None],
    addresses: Sequence[str],
    port: int,
) -> CameraAnnouncement | None:
    instance = _instance(name, service_type)
    category = "camera"
    model = ""
    native: str | None
    if service_type == AXIS:
        native = normalise_mac(_txt(properties, "macaddress"))
        model = instance.split(" - ", 1)[0].strip()
    elif service_type == HOMEKIT:
        try:
            ci = int(_txt(properties, "ci"))
        except ValueError:
            return None
        if ci not in HOMEKIT_CAMERA_CATEGORIES:
            return None
        category = HOMEKIT_CAMERA_CATEGORIES[ci]
        native = normalise_mac(_txt(properties, "id"))
        model = _txt(properties, "md")
    elif service_type == RTSP:
        native = (
            _uuid(_txt(properties, "uuid"))
            or normalise_mac(_txt(properties, "macaddress"))
            or normalise_mac(_txt(properties, "mac"))
        )
        if native is None and instance:
            # No hardware id advertised: fall back to the instance name, which DNS-SD keeps stable per device.
            slug = _NAME_ID.sub("-", instance.lower()).strip("-")
            native = f"rtsp-{slug}" if slug else None
        model = _txt(properties, "model") or _txt(properties, "md")
    else:
        return None
    if native is None:
        return None
    return CameraAnnouncement(
        device_id=device_id("camera", native),
        native_id=native,
        service_type=service_type,
        instance=instance,
        model=model,
        category=category,
        addresses=tuple(addresses),
        port=port if 0 < port < 65536 else 0,
    )


OnCamera = Callable[[CameraAnnouncement], Awaitable[None]]


async def watch(
    on_camera: OnCamera,
    *,
    interfaces: Sequence[str] | None = None,
    service_types: Sequence[str] = SERVICE_TYPES,
    on_ignored: Callable[[str], None] | None = None,
) -> None:
    """Browses for cameras until cancelled, calling ``on_camera`` for each one added or updated, and
    ``on_ignored(service name)`` for a resolved service that is not a camera (diagnostics).

    The browser's handler runs synchronously inside zeroconf, so it only queues the name; resolution happens here,
    in this task, one at a time, so nothing is fired and forgotten.
    """
    pending: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1024)

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        try:
            pending.put_nowait((service_type, name))
        except asyncio.QueueFull:
            log.debug("mDNS resolve queue full; dropping an announcement")

    aiozc = AsyncZeroconf(interfaces=list(interfaces) if interfaces is not None else None)  # type: ignore[arg-type]
    browser: AsyncServiceBrowser | None = None
    try:
        browser = AsyncServiceBrowser(aiozc.zeroconf, list(service_types), handlers=[on_change])
        while True:
            service_type, name = await pending.get()
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
                log.debug("mDNS service did not resolve in time")
                continue
            camera = parse_service(service_type, name, info.properties, info.parsed_scoped_addresses(), info.port or 0)
            if camera is not None:
                await on_camera(camera)
            elif on_ignored is not None:
                on_ignored(name)
    finally:
        if browser is not None:
            await browser.async_cancel()
        await aiozc.async_close()


async def browse(
    timeout: float,
    *,
    interfaces: Sequence[str] | None = None,
    service_types: Sequence[str] = SERVICE_TYPES,
) -> list[CameraAnnouncement]:
    """Cameras heard within ``timeout`` seconds, one per device id."""
    found: dict[str, CameraAnnouncement] = {}

    async def collect(camera: CameraAnnouncement) -> None:
        found[camera.device_id] = camera

    try:
        async with asyncio.timeout(timeout):
            await watch(collect, interfaces=interfaces, service_types=service_types)
    except TimeoutError:
        pass
    return list(found.values())
