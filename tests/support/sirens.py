"""A Zigbee2MQTT installation with two smoke detectors and an IAS WD siren, as its retained ``bridge/devices``
publishes them (exposes as Zigbee2MQTT 2.x lists them for the Xiaomi JTYJ-GD-01LM/BW and the Heiman HS2WD-E)."""

from __future__ import annotations

import json
from typing import Any, Final

SMOKE_A: Final = "0x00158d0001a2b3c4"
SMOKE_B: Final = "0x00158d0001a2b3c5"
SIREN: Final = "0x0015bc001e01aa01"

_SMOKE_EXPOSES: Final = [
    {"type": "binary", "name": "smoke", "property": "smoke", "value_on": True, "value_off": False, "access": 1},
    {"type": "binary", "name": "battery_low", "property": "battery_low", "value_on": True, "access": 1},
]
_WARNING: Final = {
    "type": "composite",
    "name": "warning",
    "property": "warning",
    "access": 2,
    "features": [
        {"type": "enum", "name": "mode", "property": "mode", "access": 2,
         "values": ["stop", "burglar", "fire", "emergency", "police_panic", "fire_panic", "emergency_panic"]},
        {"type": "enum", "name": "level", "property": "level", "access": 2,
         "values": ["low", "medium", "high", "very_high"]},
        {"type": "binary", "name": "strobe", "property": "strobe", "access": 2, "value_on": True, "value_off": False},
        {"type": "numeric", "name": "duration", "property": "duration", "access": 2, "unit": "s"},
    ],
}  # fmt: skip


def bridge_devices() -> bytes:
    def dev(ieee: str, name: str, model: str, vendor: str, exposes: list[Any]) -> dict[str, Any]:
        return {
            "ieee_address": ieee,
            "type": "EndDevice" if "smoke" in name else "Router",
            "friendly_name": name,
            "supported": True,
            "interview_completed": True,
            "definition": {"model": model, "vendor": vendor, "exposes": exposes},
        }

    return json.dumps(
        [
            dev(SMOKE_A, "smoke_living_room", "JTYJ-GD-01LM/BW", "Xiaomi", _SMOKE_EXPOSES),
            dev(SMOKE_B, "smoke_kitchen", "JTYJ-GD-01LM/BW", "Xiaomi", _SMOKE_EXPOSES),
            dev(SIREN, "hall_siren", "HS2WD-E", "Heiman", [_WARNING]),
        ]
    ).encode()
