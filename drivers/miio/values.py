"""Pure decoders from what a lumi gateway answers to model values. Never raise: bad input gives ``None`` + a reason.

Sources:
- python-miio 0.5.12 ``miio/gateway/devices/subdevices.yaml``: ``lumi.sensor_ht.v1`` (type_id 10) and
  ``lumi.weather.v1`` (type_id 19) report temperature, humidity and (19 only) pressure through
  ``get_device_prop_exp`` with ``devisor: 100``; ``lumi.sensor_smoke`` (type_id 15) has no properties there.
- Lumi's gateway LAN protocol (lumi-openlcoud/opencloud-docs ``gateway-LAN-communication.md``): temperature is
  hundredths of °C with 10000 meaning invalid, humidity hundredths of %RH with 0 meaning invalid, pressure in Pa
  (30000..110000, 0 invalid).
- The smoke detector's ``alarm`` codes come from the same LAN protocol (v1): 0 released, 1 fire alarm, 2 analog
  (simulated, i.e. the test button) alarm, 8 battery fault, 64 sensitivity fault, 32768 IIC communication fault.
  Home Assistant's ``xiaomi_aqara`` treats 1 and 2 as "on"; we keep 2 apart as ``test`` (protocols.md §5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from gateway.model import Quantity, Reading, SmokeState

SMOKE_CODES: Final[dict[int, SmokeState]] = {
    0: SmokeState.CLEAR,
    1: SmokeState.SMOKE,
    2: SmokeState.TEST,
    8: SmokeState.BATTERY_LOW,
    64: SmokeState.FAULT,
    32768: SmokeState.FAULT,
}

HT_PROPERTIES: Final = ("temperature", "humidity", "pressure")
"""The properties python-miio's ``SubDevice.update()`` asks a weather sensor for, in order."""

SMOKE_PROPERTIES: Final = ("alarm", "density")
"""What the driver asks a smoke detector for itself, since python-miio 0.5.12 cannot."""

# Plausible ranges after scaling; outside them a value is a device's "invalid" marker or garbage.
_RANGES: Final[dict[Quantity, tuple[float, float]]] = {
    Quantity.TEMPERATURE: (-40.0, 85.0),  # the sensor's rated range; 100.00 is the "invalid" marker
    Quantity.HUMIDITY: (0.01, 100.0),  # exactly 0 is the "invalid" marker
    Quantity.PRESSURE: (300.0, 1100.0),
    Quantity.ILLUMINANCE: (0.0, 200_000.0),
    Quantity.BATTERY: (0.0, 100.0),
}


def _number(value: Any) -> float | None:
    # bool is an int in Python but never a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def reading(device_id: str, quantity: Quantity, value: Any, ts: float) -> tuple[Reading | None, str]:
    """One already-scaled value as a :class:`Reading`, if it is a finite number in the plausible range."""
    number = _number(value)
    if number is None:
        return None, f"{quantity.value} is not a number"
    low, high = _RANGES.get(quantity, (-math.inf, math.inf))
    if not low <= number <= high:
        return None, f"{quantity.value} out of range"
    return Reading(device_id, quantity, round(number, 2), ts), ""


def ht_readings(device_id: str, status: dict[str, Any], ts: float) -> tuple[list[Reading], list[str]]:
    """Readings from a python-miio ``SubDevice.status`` of a weather sensor (values already divided by 100).

    Pressure arrives in Pa / 100 = hPa, which is the model's unit already. Missing properties are skipped (the
    ht.v1 has no pressure); present but bad ones are returned as reasons to count.
    """
    out: list[Reading] = []
    reasons: list[str] = []
    for name, quantity in (
        ("temperature", Quantity.TEMPERATURE),
        ("humidity", Quantity.HUMIDITY),
        ("pressure", Quantity.PRESSURE),
    ):
        if status.get(name) is None:
            continue
        value, reason = reading(device_id, quantity, status[name], ts)
        if value is None:
            reasons.append(reason)
        else:
            out.append(value)
    return out, reasons


def smoke_state(code: Any) -> tuple[SmokeState | None, str]:
    """The :class:`SmokeState` of a lumi smoke ``alarm`` code; unknown codes are refused, never taken for smoke."""
    if isinstance(code, str) and code.strip().isdecimal() and code.isascii():
        code = int(code)  # the LAN protocol sends it as a string
    if isinstance(code, bool) or not isinstance(code, int):
        return None, "smoke alarm code is not an integer"
    state = SMOKE_CODES.get(code)
    if state is None:
        return None, "unknown smoke alarm code"
    return state, ""


def smoke_reply(result: Any) -> tuple[tuple[SmokeState, float | None] | None, str]:
    """The answer to ``get_device_prop_exp [[sid, "alarm", "density"]]``: ``[[alarm, density]]``."""
    if not isinstance(result, Sequence) or isinstance(result, str | bytes) or len(result) != 1:
        return None, "smoke reply is not a one-element list"
    values = result[0]
    if not isinstance(values, Sequence) or isinstance(values, str | bytes) or len(values) != len(SMOKE_PROPERTIES):
        return None, "smoke reply has the wrong shape"
    state, reason = smoke_state(values[0])
    if state is None:
        return None, reason
    density = _number(values[1])
    return (state, density), ""
