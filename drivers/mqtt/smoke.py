"""Smoke-detector state from Zigbee2MQTT flags (protocols.md §5).

Zigbee2MQTT decodes the IAS zone status into booleans: ``smoke`` (bit0), ``tamper`` (bit2), ``battery_low``
(bit3), ``trouble`` (bit6), ``test`` (bit8; Xiaomi JTYJ-GD-01LM/BW uses alarm2 = bit1 for it, but Z2M exposes it
under the same ``test`` key). A device in test mode raises its alarm bit too, so ``test`` wins over ``smoke``;
a fault (``trouble``, ``fault``, ``battery_defect``) is never smoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.model import SmokeState

SMOKE_KEYS: Final = ("smoke", "test", "tamper", "battery_low", "trouble", "fault", "battery_defect")
_FAULT_KEYS: Final = ("trouble", "fault", "battery_defect")


def z2m_smoke_state(obj: Mapping[str, Any]) -> SmokeState | None:
    """The detector's state, or None if a flag that is present is not a JSON boolean (malformed)."""
    for key in SMOKE_KEYS:
        value = obj.get(key)
        if value is not None and type(value) is not bool:
            return None
    if obj.get("test") is True:
        return SmokeState.TEST
    if obj.get("smoke") is True:
        return SmokeState.SMOKE
    for key in _FAULT_KEYS:
        if obj.get(key) is True:
            return SmokeState.FAULT
    if obj.get("tamper") is True:
        return SmokeState.TAMPER
    if obj.get("battery_low") is True:
        return SmokeState.BATTERY_LOW
    return SmokeState.CLEAR


def smoke_attrs(obj: Mapping[str, Any]) -> dict[str, str | float | int | bool]:
    """Secondary flags worth keeping beside the state (a smoke alarm with a low battery, say)."""
    attrs: dict[str, str | float | int | bool] = {}
    for key in ("tamper", "battery_low", "trouble"):
        value = obj.get(key)
        if type(value) is bool:
            attrs[key] = value
    density = obj.get("smoke_density")
    if isinstance(density, int | float) and type(density) is not bool:
        attrs["smoke_density"] = density
    return attrs
