"""Physical ranges per quantity: a decoded value outside them is bad input, never a stored reading.

The bounds are what the quantity can physically be where a home hub is (and what consumer sensors can report),
wide enough never to refuse a real reading: a value outside is a corrupt, forged or misdecoded payload.
"""

from __future__ import annotations

import math
from typing import Final

from gateway.model import Quantity

RANGES: Final[dict[Quantity, tuple[float, float]]] = {
    Quantity.TEMPERATURE: (-60.0, 125.0),  # °C: the SHT/BME sensors' rated range
    Quantity.HUMIDITY: (0.0, 100.0),  # %RH
    Quantity.BATTERY: (0.0, 100.0),  # %
    Quantity.PRESSURE: (300.0, 1100.0),  # hPa: the BME280's range (Everest's summit is ~330 hPa)
    Quantity.ILLUMINANCE: (0.0, 200_000.0),  # lx: direct sunlight is ~120,000
    Quantity.VOLTAGE: (0.0, 60.0),  # V: battery and USB supplies
    Quantity.CO2: (0.0, 40_000.0),  # ppm: the SCD4x's range
    Quantity.PM25: (0.0, 1_000.0),  # µg/m³: optical PM sensors saturate below this
    Quantity.SMOKE_DENSITY: (0.0, 100.0),  # %/m obscuration
    Quantity.RSSI: (-127.0, 20.0),  # dBm
}


def plausible(quantity: Quantity, value: float) -> bool:
    low, high = RANGES.get(quantity, (-math.inf, math.inf))
    return math.isfinite(value) and low <= value <= high
