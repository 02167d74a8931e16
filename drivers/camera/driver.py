"""The camera driver: discovers cameras (mDNS, ONVIF WS-Discovery), keeps a rolling pre-roll buffer per configured
camera, and records end-to-end encrypted clips on request.

What it needs of the daemon comes once, at construction (:class:`~drivers.base.DriverContext`): the clip spool, a
:class:`~drivers.base.ClipSealer` that seals to the household's current members. A sealed clip goes to the hub
(:meth:`~drivers.base.HubPort.clip_sealed`), which indexes and keeps it, or refuses it if cameras are restricted.
The hub tells the driver of a restriction (:meth:`CameraDriver.restriction_changed`) so that recording stops and
the pre-roll is wiped at once. The hub asks for clips through :meth:`CameraDriver.record_clips`. Stream URLs and
passwords come from the config and the credential store and are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

from drivers.base import Credentials, Discovered, Driver, DriverContext, DriverHealth, HubPort
from drivers.camera import mdns, ringbuffer, wsdiscovery
from drivers.camera.ffmpeg import FfmpegVersion, detect
from drivers.camera.recorder import Recorder, RecorderHealth, RecorderSettings
from drivers.camera.remux import Remux
from gateway.backoff import Backoff
from gateway.errors import ClipAborted, ConfigError, PermanentError
from gateway.model import Category, Clip, DeviceInfo, DeviceKind, device_id

log = logging.getLogger(__name__)


class CameraConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[drivers.camera.cameras]]`` entry. The password is the credential ``camera.password.<name>``."""

    name: str
    stream_url: str
    """Without credentials: ``rtsp://host:554/path`` or ``http://host/stream.ts``."""
    username: str = ""
    native_id: str = ""
    """The camera's UUID or MAC, so its id matches discovery; if empty, a stable id is derived from ``name``."""
    pre_roll_s: float = 6.0
    post_roll_s: float = 10.0
    segment_s: float = 2.0
    stall_s: float = 10.0


_DEFAULT_WSD_TARGET = f"{wsdiscovery.MULTICAST_GROUP}:{wsdiscovery.PORT}"


class CameraDriverConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[drivers.camera]``."""

    mdns: bool = True
    wsdiscovery: bool = True
    wsdiscovery_target: str = _DEFAULT_WSD_TARGET
    """Where Probes go; ``host:port``. Tests point it at loopback."""
    interface: str = ""
    """IPv4 address of the interface to discover on (e.g. ``127.0.0.1``); empty = all / default route."""
    discovery_interval_s: float = 300.0
    max_clip_s: float = 120.0
    buffer_dir: str = ""
    """RAM-backed directory for the pre-roll ring; empty = ``$RUNTIME_DIRECTORY/camera`` or /dev/shm."""
    cameras: list[CameraConfig] = msgspec.field(default_factory=list)


def parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError([("drivers.camera.wsdiscovery_target", "expected host:port")])
    return host, int(port)


def camera_device_id(camera: CameraConfig) -> str:
    if camera.native_id:
        native = mdns.normalise_mac(camera.native_id) or wsdiscovery.endpoint_uuid(camera.native_id)
        if native is None:
            raise ConfigError([(f"drivers.camera.cameras.{camera.name}.native_id", "expected a UUID or a MAC")])
        return device_id("camera", native)
    return device_id("camera", str(uuid.uuid5(uuid.NAMESPACE_URL, f"kotihub-camera:{camera.name}")))


def stream_url_with_credentials(url: str, username: str, password: str) -> str:
    """Puts credentials into the URL ffmpeg opens (RTSP has no other way); the result is never logged."""
    if not username:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(username, safe="")
    if password:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def new_clip_id() -> str:
    """128 random bits. The id names the spool file, ``items.ref``, the register's blob path and its audit, which
    outlive the clip: so it says nothing of when or by which camera the clip was recorded (that is inside the
    encrypted record), and unlike a keyed hash of those it does not even link two clips of one camera."""
    return secrets.token_hex(16)


class CameraHealth(DriverHealth, frozen=True, kw_only=True):
    """The camera driver's health: restriction, who clips are sealed to, clip counts and each camera's recorder."""

    restricted: bool
    recipients: int
    """How many household members a clip sealed now could be opened by."""
    clips_sealed: int
    clips_failed: int
    clips_aborted: int
    cameras: dict[str, RecorderHealth]
    discovered: int
    discovery_errors: dict[str, int]
    """Failed discovery rounds by method (``mdns``, ``wsdiscovery``)."""


class CameraDriver(Driver):
    name: ClassVar[str] = "camera"
    Config: ClassVar[type[msgspec.Struct]] = CameraDriverConfig

    def __init__(
        self,
        config: CameraDriverConfig,
        credentials: Credentials,
        context: DriverContext | None = None,
        *,
        require_ram_buffer: bool = True,
    ) -> None:
        super().__init__(config, credentials, context)
        self.config: CameraDriverConfig = config
        self._require_ram = require_ram_buffer
        self._hub: HubPort | None = None
        self._restricted = False
        self._recorders: dict[str, Recorder] = {}
        self._ready = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self.clips_sealed = 0
        self.clips_failed = 0
        self.clips_aborted = 0
        self.discovered: dict[str, Discovered] = {}
        self.discovery_errors: dict[str, int] = {}
        for camera in config.cameras:
            if not camera.name or "/" in camera.name:
                raise ConfigError([("drivers.camera.cameras.name", "a non-empty name without '/' is required")])
            if camera.stream_url and urlsplit(camera.stream_url).username:
                raise ConfigError(
                    [(f"drivers.camera.cameras.{camera.name}.stream_url", "put credentials in username/credential")]
                )
        ids = [camera_device_id(camera) for camera in config.cameras]
        names = [camera.name for camera in config.cameras]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise ConfigError([("drivers.camera.cameras", "each camera needs its own name and native_id")])
        self._wsd_target = parse_target(config.wsdiscovery_target)

    # -- what the hub tells it -----------------------------------------------------------------------------------

    def restriction_changed(self, restricted: frozenset[Category]) -> None:
        """The household restricted (or lifted) the camera category: stop recording now, abort open clips, wipe the
        pre-roll buffer. (The hub also refuses any clip sealed meanwhile.)"""
        on = Category.CAMERA in restricted
        if on == self._restricted:
            return
        self._restricted = on
        for recorder in self._recorders.values():
            recorder.set_restricted(on)
        log.info("camera recording %s", "restricted" if on else "allowed again")

    @property
    def restricted(self) -> bool:
        return self._restricted

    def recorder(self, device: str) -> Recorder:
        return self._recorders[device]

    async def wait_ready(self, timeout: float) -> None:
        """Waits until :meth:`run` has started every configured camera's recorder."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # -- running ---------------------------------------------------------------------------------------------------

    async def run(self, hub: HubPort) -> None:
        version = await detect()
        root = Path(self.config.buffer_dir) if self.config.buffer_dir else ringbuffer.default_root()
        # Each clip holds a thread while its post-roll arrives: a pool of our own keeps them from starving the
        # default executor that the rest of the daemon uses.
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, 2 * len(self.config.cameras)), thread_name_prefix="kotihub-clip"
        )
        self._hub = hub
        try:
            await self._run(hub, version, root)
        finally:
            self._hub = None
            self._ready.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self, hub: HubPort, version: FfmpegVersion, root: Path) -> None:
        async with asyncio.TaskGroup() as tg:
            for camera in self.config.cameras:
                recorder = self._make_recorder(camera, version, root)
                await hub.device_seen(
                    DeviceInfo(device_id=recorder.device_id, driver=self.name, kind=DeviceKind.CAMERA, name=camera.name)
                )
                tg.create_task(recorder.run(), name=f"camera-recorder:{camera.name}")
            self._ready.set()
            if self.config.mdns:
                tg.create_task(self._keep_running("mdns", lambda: self._watch_mdns(hub)), name="camera-mdns")
            if self.config.wsdiscovery:
                tg.create_task(
                    self._keep_running("wsdiscovery", lambda: self._probe_loop(hub)), name="camera-wsdiscovery"
                )

    def _make_recorder(self, camera: CameraConfig, version: FfmpegVersion, root: Path) -> Recorder:
        device = camera_device_id(camera)
        secret = self.credentials.get(f"camera.password.{camera.name}")
        # Credential files usually end in a newline that is not part of the password.
        try:
            password = secret.decode("utf-8").rstrip("\r\n") if secret else ""
        except UnicodeDecodeError:
            raise ConfigError([(f"credential camera.password.{camera.name}", "not UTF-8 text")]) from None
        url = stream_url_with_credentials(camera.stream_url, camera.username, password)
        settings = RecorderSettings(
            segment_s=camera.segment_s,
            pre_roll_s=camera.pre_roll_s,
            post_roll_s=camera.post_roll_s,
            stall_s=camera.stall_s,
            max_clip_s=self.config.max_clip_s,
        )
        # The directory name must not reveal the camera's name (personal data): hash it.
        buffer_dir = root / hashlib.sha256(device.encode()).hexdigest()[:16]
        recorder = Recorder(
            device_id=device,
            url=url,
            settings=settings,
            buffer_dir=buffer_dir,
            version=version,
            secrets=(password,) if password else (),
            require_ram=self._require_ram,
        )
        recorder.set_restricted(self._restricted)
        self._recorders[device] = recorder
        return recorder

    async def _announce(self, hub: HubPort, found: Discovered) -> None:
        self.stats.seen()
        self.discovered[found.device_id] = found
        await hub.device_seen(
            DeviceInfo(
                device_id=found.device_id,
                driver=self.name,
                kind=DeviceKind.CAMERA,
                model=found.model,
                address=found.address,
            )
        )

    async def _keep_running(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Discovery is a convenience; recording is the job. A failing discovery loop (no multicast route, port
        in use) is retried with backoff here instead of taking the recorders down with the driver."""
        backoff = Backoff(5.0, 600.0)
        while True:
            try:
                await loop()
                return
            except Exception as exc:
                self.discovery_errors[what] = self.discovery_errors.get(what, 0) + 1
                delay = backoff.next()
                log.warning("camera %s discovery failed (%s); retrying in %.0f s", what, type(exc).__name__, delay)
                log.debug("camera %s discovery failure", what, exc_info=True)
            # The retry delay of a failed discovery loop, not synchronisation.
            await asyncio.sleep(delay)

    async def _watch_mdns(self, hub: HubPort) -> None:
        async def on_camera(camera: mdns.CameraAnnouncement) -> None:
            await self._announce(hub, _from_mdns(camera))

        await mdns.watch(on_camera, interfaces=self._interfaces())

    async def _probe_loop(self, hub: HubPort) -> None:
        while True:
            for match in await self._probe(3.0):
                await self._announce(hub, _from_wsd(match))
            # The interval between active probes; cameras announce nothing on their own that we listen for.
            await asyncio.sleep(self.config.discovery_interval_s)

    def _interfaces(self) -> list[str] | None:
        return [self.config.interface] if self.config.interface else None

    async def _probe(self, timeout: float) -> list[wsdiscovery.ProbeMatch]:
        return await wsdiscovery.probe(
            target=self._wsd_target, interface=self.config.interface or None, timeout=timeout
        )

    async def discover(self, timeout: float) -> list[Discovered]:
        """Runs mDNS browsing and a WS-Discovery probe side by side for ``timeout`` seconds."""
        found: dict[str, Discovered] = {}
        async with asyncio.TaskGroup() as tg:
            browse = tg.create_task(mdns.browse(timeout, interfaces=self._interfaces())) if self.config.mdns else None
            probe = tg.create_task(self._probe(timeout)) if self.config.wsdiscovery else None
        if browse is not None:
            for camera in browse.result():
                found[camera.device_id] = _from_mdns(camera)
        if probe is not None:
            for match in probe.result():
                found.setdefault(match.device_id, _from_wsd(match))
        return list(found.values())

    # -- clips -----------------------------------------------------------------------------------------------------

    async def record_clip(self, device: str, reason: str) -> Clip:
        """Records pre-roll + post-roll of ``device``, sealed to the household; hands it to the hub to keep.

        Raises :class:`~gateway.errors.ClipAborted` if the camera is restricted (before or during),
        :class:`~gateway.errors.PermanentError` without recipients or spool, ``KeyError`` for an unknown camera.
        """
        if self._restricted:
            self.clips_aborted += 1
            raise ClipAborted("camera category is restricted")
        sealer = self.context.clips
        if sealer is None:
            raise PermanentError("no clip spool: this driver was given none")
        sealer.check()
        executor, hub = self._executor, self._hub
        if executor is None or hub is None:
            raise PermanentError("the camera driver is not running")
        recorder = self._recorders[device]
        capture = recorder.start_capture(reason)
        clip_id = new_clip_id()
        loop = asyncio.get_running_loop()

        def seal() -> tuple[Clip, Path]:
            # The ring holds MPEG-TS; browsers play MP4, so the clip is remuxed in pipes on its way to the encryptor.
            with Remux(capture.feed, ffmpeg=recorder.settings.ffmpeg) as mp4:
                return sealer.seal(mp4, clip_id=clip_id, device_id=device, started=capture.trigger, reason=reason)

        # The encryptor reads the feed in a worker thread while post-roll is still arriving.
        sealing = loop.run_in_executor(executor, seal)
        try:
            try:
                await capture.complete()
            except BaseException:
                capture.feed.abort()
                with contextlib.suppress(Exception):  # not BaseException: a cancellation must go on
                    await asyncio.shield(sealing)  # let the thread remove its partial file before we go on
                raise
            try:
                sealed, path = await sealing
            except BaseException:
                if capture.feed.aborted:
                    raise ClipAborted("clip aborted") from None
                raise
        except ClipAborted:
            self.clips_aborted += 1
            raise
        except BaseException:
            self.clips_failed += 1
            raise
        finally:
            recorder.release(capture)
        if not capture.segments:
            path.unlink(missing_ok=True)
            self.clips_failed += 1
            raise ClipAborted("the camera delivered no video for this clip")
        clip = msgspec.structs.replace(sealed, started=capture.started, duration_s=capture.duration_s)
        try:
            await hub.clip_sealed(clip, path)
        except ClipAborted:
            self.clips_aborted += 1
            raise
        self.clips_sealed += 1
        log.info("sealed a %.1f s camera clip (%s)", clip.duration_s, reason)
        return clip

    async def record_snapshot(self, device: str, reason: str) -> tuple[Clip, Path]:
        """A still image of ``device`` now, sealed like a clip: ``clip_id`` ends in ``-jpeg``, ``duration_s`` is 0.
        The JPEG exists only in memory before it is encrypted. Handed to the hub to keep, like a clip."""
        if self._restricted:
            raise ClipAborted("camera category is restricted")
        sealer, hub = self.context.clips, self._hub
        if sealer is None:
            raise PermanentError("no clip spool: this driver was given none")
        sealer.check()
        if hub is None:
            raise PermanentError("the camera driver is not running")
        jpeg = await self._recorders[device].snapshot()
        taken = time.time()
        clip, sealed = await asyncio.to_thread(
            sealer.seal,
            io.BytesIO(jpeg),
            clip_id=f"{new_clip_id()}-jpeg",
            device_id=device,
            started=taken,
            reason=reason,
        )
        del jpeg
        return clip, await hub.clip_sealed(clip, sealed)

    async def record_clips(self, device: str, reason: str) -> list[Clip]:
        """The hub's ``clip_requested``: a camera's id records that camera; any other device (a smoke detector, a
        motion sensor) records every camera at once. Returns the sealed clips; a camera that fails is counted and
        logged, and does not stop the others. Takes about ``post_roll_s``: run it as a task, not inline."""
        targets = [device] if device in self._recorders else list(self._recorders)
        if not targets:
            return []
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._record_quietly(target, reason)) for target in targets]
        return [clip for task in tasks if (clip := task.result()) is not None]

    async def _record_quietly(self, device: str, reason: str) -> Clip | None:
        try:
            return await self.record_clip(device, reason)
        except ClipAborted as exc:
            log.info("camera clip not recorded: %s", exc)
        except (PermanentError, OSError) as exc:
            log.warning("camera clip failed: %s", type(exc).__name__)
            log.debug("camera clip for %s failed: %s", device, exc)
        except Exception as exc:  # one camera's failure must not cancel the other cameras' clips
            log.warning("camera clip failed unexpectedly: %s", type(exc).__name__)
            log.debug("camera clip for %s failed", device, exc_info=True)
        return None

    def health(self) -> CameraHealth:
        return CameraHealth(
            link=self.link(),
            counters=self.stats.counters(),
            restricted=self._restricted,
            recipients=self.context.clips.recipients() if self.context.clips is not None else 0,
            clips_sealed=self.clips_sealed,
            clips_failed=self.clips_failed,
            clips_aborted=self.clips_aborted,
            cameras={device: rec.health() for device, rec in self._recorders.items()},
            discovered=len(self.discovered),
            discovery_errors=dict(self.discovery_errors),
        )


def _from_mdns(camera: mdns.CameraAnnouncement) -> Discovered:
    return Discovered(
        device_id=camera.device_id,
        driver="camera",
        kind=DeviceKind.CAMERA,
        model=camera.model,
        address=camera.addresses[0] if camera.addresses else "",
    )


def _from_wsd(match: wsdiscovery.ProbeMatch) -> Discovered:
    host = urlsplit(match.xaddrs[0]).hostname or "" if match.xaddrs else ""
    return Discovered(
        device_id=match.device_id, driver="camera", kind=DeviceKind.CAMERA, model=match.hardware, address=host
    )
