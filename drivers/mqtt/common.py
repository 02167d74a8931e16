"""What every MQTT family decoder shares: the result type, the decoder state and the sink that de-duplicates.

Nothing here does I/O. The sink stamps values with the hub's clock (``now``), so decoding is deterministic.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

import msgspec

from drivers.ranges import plausible
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Quantity, Reading, device_id

DRIVER: Final = "mqtt"

# Bounds so a flood of junk topics cannot grow the state without limit; a real home has tens of devices.
MAX_TRACKED_KEYS: Final = 50_000


class Decoded(msgspec.Struct, frozen=True):
    """What one MQTT message meant. ``handled`` is False for topics no enabled family owns."""

    devices: tuple[DeviceInfo, ...] = ()
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    subscribe: tuple[str, ...] = ()
    """State topics that HA discovery pointed at and the driver must now subscribe to."""
    bad: str | None = None
    """Why the payload was rejected (malformed or unknown on a topic we own); the driver counts it."""
    hint: str = ""
    """A short hint of where a bad payload came from, for DEBUG logs only (may be personal data)."""
    duplicates: int = 0
    handled: bool = True
    hold: bool = False
    """The message names a device that cannot be resolved yet (Zigbee2MQTT's device list has not arrived): the
    driver keeps it, persisted, and decodes it again once the list comes. Nothing else in this result is set."""
    persist: tuple[tuple[str, str, bytes | None], ...] = ()
    """``(namespace, key, value or None to delete)`` records the driver must persist: the maps that give devices
    their ids, so that they survive a restart."""
    remapped: bool = False
    """A name map changed: held messages may resolve now."""


NOTHING: Final = Decoded()
IGNORED: Final = Decoded(handled=False)
HOLD: Final = Decoded(hold=True)


def mqtt_id(native: str) -> str:
    return device_id(DRIVER, native)


def number(value: Any) -> float | None:
    """A finite JSON number (not a bool) as float, else None."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    return None


def numeric(value: Any) -> float | None:
    """Like :func:`number`, but also accepts a numeric string (HA state topics often carry plain text)."""
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return number(value)


INVALID: Final = object()
"""Returned by :func:`loads` for a payload that is not JSON."""
_json = msgspec.json.Decoder()


def loads(payload: bytes) -> Any:
    """Parses JSON; returns :data:`INVALID` instead of raising."""
    try:
        return _json.decode(payload)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return INVALID


def text(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


class DecoderState:
    """Everything the decoders remember between messages; plain data, no I/O."""

    def __init__(self) -> None:
        self.z2m_ieee: dict[str, str] = {}
        """Zigbee2MQTT friendly name -> IEEE address (from ``bridge/devices``), so ids survive renames."""
        self.z2m_info: dict[str, DeviceInfo] = {}
        """IEEE address -> what ``bridge/devices`` said about the device."""
        self.ha_by_state_topic: dict[str, list[Any]] = {}
        self.ha_by_config_topic: dict[str, Any] = {}
        self.ha_saved: dict[str, bytes] = {}
        """Discovery config payloads as persisted, so an unchanged retained config is not written again."""
        self.last_reading: dict[tuple[str, Quantity], tuple[float, float]] = {}
        self.last_state: dict[tuple[str, EventKind], str] = {}
        self.last_seen: dict[str, tuple[DeviceInfo, float]] = {}
        self.smoke_devices: set[str] = set()

    def trim(self) -> None:
        # Crude but bounded: forgetting only costs one repeated value or a refreshed device_seen.
        for table in (self.last_reading, self.last_seen):
            if len(table) > MAX_TRACKED_KEYS:
                table.clear()
        if len(self.last_state) > MAX_TRACKED_KEYS:
            # Keep smoke states: losing them would re-emit a `clear`, harmless, but keep them anyway.
            self.last_state = {k: v for k, v in self.last_state.items() if k[1] is EventKind.SMOKE}


class Sink:
    """Collects one message's values, dropping repeats: a reading equal to the last one emitted for the same
    (device, quantity) within the window, and an event whose state did not change. State changes (a smoke
    transition above all) are never dropped."""

    __slots__ = (
        "_seen_interval",
        "_state",
        "_window",
        "bad",
        "devices",
        "duplicates",
        "events",
        "held",
        "hint",
        "now",
        "persist",
        "readings",
        "remapped",
        "subscribe",
    )

    def __init__(self, state: DecoderState, now: float, window: float, seen_interval: float) -> None:
        self._state = state
        self._window = window
        self._seen_interval = seen_interval
        self.now = now
        self.devices: list[DeviceInfo] = []
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.subscribe: list[str] = []
        self.duplicates = 0
        self.bad: str | None = None
        self.hint = ""
        self.held = False
        self.persist: list[tuple[str, str, bytes | None]] = []
        self.remapped = False

    def device(self, info: DeviceInfo) -> None:
        prev = self._state.last_seen.get(info.device_id)
        if prev is not None and prev[0] == info and 0.0 <= self.now - prev[1] < self._seen_interval:
            return
        self._state.last_seen[info.device_id] = (info, self.now)
        self.devices.append(info)

    def reading(self, dev: str, quantity: Quantity, value: float) -> None:
        if not plausible(quantity, value):
            self.reject(f"{quantity.value} outside its physical range", dev)
            return
        key = (dev, quantity)
        prev = self._state.last_reading.get(key)
        # A clock that stepped back must not mute a device, hence the lower bound.
        if prev is not None and prev[0] == value and 0.0 <= self.now - prev[1] < self._window:
            self.duplicates += 1
            return
        self._state.last_reading[key] = (value, self.now)
        self.readings.append(Reading(dev, quantity, value, self.now))

    def state(
        self, dev: str, kind: EventKind, state: str, attrs: dict[str, str | float | int | bool] | None = None
    ) -> None:
        key = (dev, kind)
        if self._state.last_state.get(key) == state:
            self.duplicates += 1
            return
        self._state.last_state[key] = state
        self.events.append(Event(device_id=dev, kind=kind, state=state, ts=self.now, attrs=attrs or {}))

    def reject(self, reason: str, hint: str = "") -> None:
        if self.bad is None:
            self.bad = reason
            self.hint = hint

    def hold(self) -> None:
        self.held = True

    def result(self) -> Decoded:
        if self.held:
            return HOLD
        if not (
            self.devices
            or self.readings
            or self.events
            or self.subscribe
            or self.bad
            or self.duplicates
            or self.persist
            or self.remapped
        ):
            return NOTHING
        return Decoded(
            devices=tuple(self.devices),
            readings=tuple(self.readings),
            events=tuple(self.events),
            subscribe=tuple(self.subscribe),
            bad=self.bad,
            hint=self.hint,
            duplicates=self.duplicates,
            persist=tuple(self.persist),
            remapped=self.remapped,
        )


def kind_for(is_smoke: bool) -> DeviceKind:
    return DeviceKind.SMOKE_DETECTOR if is_smoke else DeviceKind.SENSOR


def raise_if_cancelled() -> None:
    """Re-raises a cancellation that was swallowed on its way here. On Python 3.11, ``asyncio.wait_for`` (which
    aiomqtt awaits CONNACK and SUBACK with) returns the result and drops a cancel that lands as the reply arrives,
    and a TaskGroup whose child failed meanwhile raises that failure instead; either way the driver would go on
    into a message loop nobody will ever cancel again, and the daemon's stop would hang."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
