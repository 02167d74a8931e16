"""Loads the golden BLE vectors in tests/vectors/ble/ (each with its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drivers.ble.common import uuid16

VECTOR_DIR = Path(__file__).resolve().parent.parent / "vectors" / "ble"


def load(name: str) -> list[dict[str, Any]]:
    doc = json.loads((VECTOR_DIR / f"{name}.json").read_text())
    vectors: list[dict[str, Any]] = doc["vectors"]
    for vector in vectors:
        payload = bytes.fromhex(vector["payload"])
        if "uuid16" in doc:
            vector["service_data"] = {uuid16(int(doc["uuid16"], 16)): payload}
            vector["manufacturer_data"] = {}
        else:
            vector["service_data"] = {}
            vector["manufacturer_data"] = {int(doc["company_id"]): payload}
        vector["key"] = bytes.fromhex(vector["bindkey"]) if vector.get("bindkey") else None
    return vectors


def all_vectors() -> list[dict[str, Any]]:
    return [v for name in ("bthome", "atc", "mibeacon", "ruuvi") for v in load(name)]
