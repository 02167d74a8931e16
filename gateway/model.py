"""The hub's value types: what drivers produce and the store keeps.

Units are normalised once, in the driver, to the unit named by each :class:`Quantity`; nothing downstream converts.
A device id is ``"{driver}:{native id}"`` (MAC, IEEE address, miio did, camera UUID) and is stable across restarts
and rediscovery, so it can key everything the hub keeps about a device.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec


class Quantity(enum.StrEnum):
    """A measured quantity; the value of a :class:`Reading` is always in :data:`UNITS` of it."""

    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    ILLUMINANCE = "illuminance"
    PRESSURE = "pressure"
    BATTERY = "battery"
    VOLTAGE = "voltage"
    CO2 = "co2"
    PM25 = "pm25"
    SMOKE_DENSITY = "smoke_density"
    RSSI = "rssi"


UNITS: Final[dict[Quantity, str]] = {
    Quantity.TEMPERATURE: "°C",
    Quantity.HUMIDITY: "%RH",
    Quantity.ILLUMINANCE: "lx",
    Quantity.PRESSURE: "hPa",
    Quantity.BATTERY: "%",
    Quantity.VOLTAGE: "V",
    Quantity.CO2: "ppm",
    Quantity.PM25: "µg/m³",
    Quantity.SMOKE_DENSITY: "%/m",
    Quantity.RSSI: "dBm",
}


class DeviceKind(enum.StrEnum):
    SENSOR = "sensor"
    SMOKE_DETECTOR = "smoke_detector"
    CAMERA = "camera"
    GATEWAY = "gateway"
    SIREN = "siren"
    OTHER = "other"


class EventKind(enum.StrEnum):
    SMOKE = "smoke"
    MOTION = "motion"
    CONTACT = "contact"
    WATER_LEAK = "water_leak"
    BUTTON = "button"
    AVAILABILITY = "availability"


class SmokeState(enum.StrEnum):
    """The closed set of smoke-detector states. A fault is never reported as smoke."""

    CLEAR = "clear"
    SMOKE = "smoke"
    TEST = "test"
    FAULT = "fault"
    TAMPER = "tamper"
    BATTERY_LOW = "battery_low"


class Lane(enum.StrEnum):
    """Outbox lanes. ``alarm`` is never queued behind the others."""

    ALARM = "alarm"
    EVENTS = "events"
    READINGS = "readings"
    CLIPS = "clips"
    DIAGNOSTICS = "diagnostics"


class Category(enum.StrEnum):
    """Processing categories the household can restrict (privacy notice: right to restrict processing)."""

    SENSORS = "sensors"
    ALARMS = "alarms"
    CAMERA = "camera"
    PRESENCE = "presence"
    DIAGNOSTICS = "diagnostics"


def device_id(driver: str, native_id: str) -> str:
    """The stable id of a device: ``"{driver}:{native id}"``, native id lower-cased so rediscovery matches."""
    return f"{driver}:{native_id.lower()}"


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a driver knows about a device. Name and room are personal data and are stored encrypted."""

    device_id: str
    driver: str
    kind: DeviceKind
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    room: str = ""
    address: str = ""
    """Where the device was heard (MAC, IP, topic); personal data, never logged at INFO."""
    via: str = ""
    """The device id of the gateway or bridge this device is reached through, if any."""


class Reading(msgspec.Struct, frozen=True, array_like=True):
    """One measured value; ``ts`` is UTC seconds since the epoch, as stamped by the hub or the device.

    ``channel`` tells apart several values of one quantity from one device (two probes of a BTHome sensor: ``1``,
    ``2``); empty for the usual single value. It is last, so frames written before it existed decode unchanged; an
    empty one is one byte before compression and next to nothing after (3 bytes in a frame of 500 readings)."""

    device_id: str
    quantity: Quantity
    value: float
    ts: float
    channel: str = ""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A state change that matters on its own: smoke alarms, motion, availability."""

    device_id: str
    kind: EventKind
    state: str
    ts: float
    attrs: dict[str, str | float | int | bool] = msgspec.field(default_factory=dict)

    @property
    def lane(self) -> Lane:
        # Every smoke-detector state rides the alarm lane so that `smoke` and the `clear` after it stay in order.
        return Lane.ALARM if self.kind is EventKind.SMOKE else Lane.EVENTS

    @property
    def category(self) -> Category:
        if self.kind is EventKind.SMOKE:
            return Category.ALARMS
        if self.kind in (EventKind.MOTION, EventKind.CONTACT):
            return Category.PRESENCE
        return Category.SENSORS


class Clip(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded camera clip; its bytes are age ciphertext in the spool, never plaintext on disk."""

    clip_id: str
    device_id: str
    started: float
    duration_s: float
    size: int
    sha256: str
    """Digest of the ciphertext, so the register can verify an upload without being able to read it."""
    reason: str
