"""The narrow port between drivers and the hub, and what every driver shares.

A driver turns one protocol family into model values and hands them to the hub through :class:`HubPort`. It lives
in ``run()`` until cancelled; the hub restarts it with backoff if it raises. Drivers never touch the store, the
cloud or policy.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import msgspec

from gateway.model import DeviceInfo, DeviceKind, Event, Reading
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "malformed": self.malformed,
            "duplicates": self.duplicates,
            "last_message": self.last_message,
        }


class Driver(abc.ABC):
    """Base of all drivers. Subclasses set ``name`` and ``Config`` (a msgspec Struct for ``[drivers.NAME]``)."""

    name: ClassVar[str]
    Config: ClassVar[type[msgspec.Struct]]

    def __init__(self, config: Any, credentials: Credentials) -> None:
        self.config = config
        self.credentials = credentials
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

    def health(self) -> dict[str, Any]:
        """Driver-specific health for status and selftest; extend, don't replace, the base counters."""
        return self.stats.as_dict()
