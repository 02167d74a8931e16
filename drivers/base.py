"""The narrow port between drivers and the hub, and what every driver shares.

A driver turns one protocol family into model values and hands them to the hub through :class:`HubPort`. It lives
in ``run()`` until cancelled; the hub restarts it with backoff if it raises. Drivers never touch the store, the
cloud or policy.

What a driver needs of the daemon is handed over once, at construction, in a :class:`DriverContext` (its persisted
memory, the clip spool). What only some drivers can do is a capability, a :func:`~typing.runtime_checkable`
Protocol below (:class:`Adopts`, :class:`ForgetsErased`, :class:`DrivesSirens`, :class:`RecordsClips`,
:class:`Restrictable`) that the hub checks with ``isinstance``, never by a driver's name or a ``getattr``.
"""

from __future__ import annotations

import abc
import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, runtime_checkable

import msgspec

from drivers.memory import Memory, VolatileMemory
from gateway.model import Category, Clip, DeviceInfo, DeviceKind, Event, Reading
from gateway.supervisor import Progress


class HubPort(Protocol):
    """What a driver may ask of the hub."""

    async def device_seen(self, info: DeviceInfo) -> None:
        """A device was heard; registers it on first sight and refreshes its last-seen time."""

    async def readings(self, readings: Sequence[Reading]) -> None:
        """Queues readings for the store; returns once queued (waits only when the store applies back-pressure)."""

    async def event(self, event: Event) -> None:
        """Stores an event; returns once it is accepted (committed). Smoke states go out on the alarm lane."""

    async def clip_requested(self, device_id: str, reason: str) -> None:
        """Asks the camera pipeline for a clip of ``device_id`` (motion, alarm, manual)."""

    async def clip_sealed(self, clip: Clip, sealed: Path) -> Path:
        """A clip was sealed by the context's :class:`ClipSealer` (still ``<id>.age.tmp``): the hub indexes it and
        moves it into the spool, and returns its final path. Raises :class:`~gateway.errors.ClipAborted` (and
        deletes the file) if the household restricted cameras meanwhile: whether a clip is kept is the hub's call."""
        ...


class ClipSealer(Protocol):
    """The store's clip spool as a camera sees it: it seals a clip to the household's members, never to a key the
    hub holds. Implemented by :class:`gateway.store.clipspool.ClipSpool`."""

    def recipients(self) -> int:
        """How many household members could open a clip sealed now."""
        ...

    def check(self) -> None:
        """Raises a :class:`~gateway.errors.PermanentError` if no clip could be sealed now (no household members)."""

    def seal(
        self, plaintext: io.RawIOBase | BinaryIO, *, clip_id: str, device_id: str, started: float, reason: str
    ) -> tuple[Clip, Path]:
        """Blocking (run it in a worker thread): encrypts ``plaintext`` as it streams to ``<id>.age.tmp``, fsynced;
        the partial file is removed if ``plaintext`` raises. Hand the result to :meth:`HubPort.clip_sealed`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverContext:
    """What the daemon hands every driver at construction; tests and tools use the defaults."""

    memory: Memory = field(default_factory=VolatileMemory)
    """Where a driver persists what must survive a restart (name maps, adoptions, replay counters)."""
    clips: ClipSealer | None = None
    """The clip spool (only drivers that record clips use it); None where no clip may be kept."""


class SirenOutput(Protocol):
    """Sirens a driver can sound (:class:`DrivesSirens`), driven by :mod:`gateway.sirens`."""

    async def sound(self, on: bool, *, wait: float = 2.0) -> int: ...

    async def run(self) -> None: ...

    def devices(self) -> list[DeviceInfo]: ...


@runtime_checkable
class Adopts(Protocol):
    """A driver that hears devices that may not be the household's records them only once adopted."""

    async def adopt(self, device: str) -> bool:
        """Adopts ``device`` (persisted); False if it already was; ``ValueError`` for an id it cannot adopt."""
        ...


@runtime_checkable
class ForgetsErased(Protocol):
    """A driver that keeps something about devices in memory drops it after an erasure."""

    def forget(self, scope: str, target: str) -> None:
        """``scope`` is ``all`` or ``device`` (``target`` its id); the store's copy went with the erasure."""


@runtime_checkable
class DrivesSirens(Protocol):
    """A driver that can reach sirens (the local alarm path)."""

    def siren_output(self, devices: Callable[[], Iterable[DeviceInfo]]) -> SirenOutput:
        """The sirens it reaches, among them those in ``devices()`` (the hub's siren devices)."""
        ...


@runtime_checkable
class RecordsClips(Protocol):
    """A driver that records clips (cameras), for the hub's ``clip_requested``."""

    async def record_clips(self, device_id: str, reason: str) -> list[Clip]:
        """A camera's id records that camera, any other id (a smoke detector) every camera; returns the clips kept.
        Takes about the post-roll: the hub runs it as a task."""
        ...


@runtime_checkable
class Restrictable(Protocol):
    """A driver that holds personal data of its own before the hub sees it (a camera's pre-roll) and must act on
    the household's restriction at once. The hub tells it the restricted categories on start and on every change;
    the hub still drops whatever a restricted category produces."""

    def restriction_changed(self, restricted: frozenset[Category]) -> None: ...


class Credentials(Protocol):
    """Secrets by name (systemd credentials or the 0600 credential directory); never from the config file."""

    def get(self, name: str) -> bytes | None: ...


class Discovered(msgspec.Struct, frozen=True, kw_only=True):
    """A device found by an active discovery, known to the hub or not."""

    device_id: str
    driver: str
    kind: DeviceKind
    model: str = ""
    address: str = ""
    rssi: float | None = None


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """What a driver's devices hang on (a broker, a radio adapter), for status and ``kotihub selftest``: the check
    is the same for every driver, so the hub asks :meth:`Driver.link` instead of knowing drivers by name."""

    check: str
    """The selftest line (``mqtt``, ``bluetooth``); its texts are ``{messages}.ok``, ``.down`` and ``.fix``."""
    messages: str
    up: bool
    reason: str = ""
    """Why it is down, for the person at the box: no addresses, no secrets."""
    essential: bool = True
    """Down is a failure (no device of the driver can be reached), not only a warning."""


class DriverCounters(msgspec.Struct, frozen=True, kw_only=True):
    """The counters every driver keeps (:class:`DriverStats`), as they stood when its health was asked."""

    messages: int = 0
    malformed: int = 0
    duplicates: int = 0
    last_message: float | None = None


class DriverHealth(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Driver.health` reports: the driver's :class:`Link` and the counters every driver keeps. A driver
    with more to say subclasses it (``MqttHealth``); every field is declared, so a misspelt counter is a type error,
    not a new key in ``kotihub status``. Encoded only where it leaves the process (the control socket)."""

    link: Link | None = None
    counters: DriverCounters = DriverCounters()


class DriverStats:
    """Counters every driver keeps, shown in ``kotihub status``; and a log that speaks once per (device, reason)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.messages = 0
        self.malformed = 0
        self.duplicates = 0
        self.last_message: float | None = None
        self._told: set[tuple[str, str]] = set()

    def seen(self) -> None:
        self.messages += 1
        self.last_message = time.time()

    def bad_payload(self, device_hint: str, reason: str) -> None:
        """Counts a malformed or unknown payload; logs it the first time for this device and reason."""
        self.malformed += 1
        key = (device_hint, reason)
        if key in self._told or len(self._told) > 10_000:
            return
        self._told.add(key)
        # The hint may be an address: keep it at DEBUG-free WARNING only as a hash-free short reason.
        self._log.warning("ignored a malformed payload (%s); further ones like it are only counted", reason)
        self._log.debug("malformed payload from %s: %s", device_hint, reason)

    def counters(self) -> DriverCounters:
        return DriverCounters(
            messages=self.messages,
            malformed=self.malformed,
            duplicates=self.duplicates,
            last_message=self.last_message,
        )


class Driver(abc.ABC):
    """Base of all drivers. Subclasses set ``name`` and ``Config`` (a msgspec Struct for ``[drivers.NAME]``)."""

    name: ClassVar[str]
    Config: ClassVar[type[msgspec.Struct]]

    def __init__(self, config: Any, credentials: Credentials, context: DriverContext | None = None) -> None:
        self.config = config
        self.credentials = credentials
        self.context = context or DriverContext()
        self.stats = DriverStats(logging.getLogger(type(self).__module__))
        self.progress = Progress(self.progress_deadline())
        """Beaten whenever the driver gets something done; silent past its deadline, the hub restarts it."""

    def progress_deadline(self) -> float | None:
        """Seconds without :attr:`progress` after which the driver counts as hung, or None (the default) for a
        driver that may legitimately be silent for any time and so is not watched."""
        return None

    @abc.abstractmethod
    async def run(self, hub: HubPort) -> None:
        """Runs until cancelled. Raising makes the hub restart the driver with backoff."""

    async def discover(self, timeout: float) -> list[Discovered]:
        """Actively looks for devices for ``timeout`` seconds; the default driver has no active discovery."""
        return []

    def health(self) -> DriverHealth:
        """The driver's health for status and selftest; a driver that reports more returns its own subclass of
        :class:`DriverHealth` (and declares that return type), built from :meth:`link` and ``stats.counters()``."""
        return DriverHealth(link=self.link(), counters=self.stats.counters())

    def link(self) -> Link | None:
        """The state of what the driver's devices hang on, if it has one (a broker, an adapter); None by default."""
        return None
