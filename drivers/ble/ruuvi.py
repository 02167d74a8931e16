"""RuuviTag data format 5 (RAWv2): manufacturer data of company 0x0499, 24 bytes, big-endian.

ruuvi/ruuvi-sensor-protocols ``dataformat_05.md``. A field holding its "not available" value (smallest signed,
largest unsigned) is left out, never reported as zero. Values keep the format's full resolution (ruuvitag-sensor
rounds to two decimals, so it may differ in the third).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from drivers.ble.common import Decoded, Reason, Rejected, mac_bytes
from gateway.model import DeviceKind, Quantity, Reading, device_id

FMT: Final = "ruuvi5"
COMPANY_ID: Final = 0x0499
MODEL: Final = "RuuviTag (RAWv2)"
LENGTH: Final = 24
_LAYOUT: Final = struct.Struct(">BhHH6xH")


def decode(address: str, manufacturer_data: Mapping[int, bytes], *, ts: float = 0.0) -> Decoded | Rejected | None:
    """Decodes Ruuvi data format 5 in one advertisement, or None if it carries no Ruuvi data."""
    data = manufacturer_data.get(COMPANY_ID)
    if data is None:
        return None
    if not data or data[0] != 5:
        return Rejected(FMT, Reason.UNSUPPORTED if data else Reason.TRUNCATED)
    if len(data) != LENGTH:
        return Rejected(FMT, Reason.TRUNCATED if len(data) < LENGTH else Reason.OVERSIZED)
    mac = mac_bytes(address)
    if mac is not None and data[18:24] not in (mac, b"\xff" * 6):  # all ones: "not available"
        return Rejected(FMT, Reason.MAC_MISMATCH)
    _, temp, hum, pressure, power = _LAYOUT.unpack_from(data)
    did = device_id("ble", address)
    readings: list[Reading] = []
    if temp != -32768:
        readings.append(Reading(did, Quantity.TEMPERATURE, temp / 200, ts))
    if hum != 0xFFFF:
        readings.append(Reading(did, Quantity.HUMIDITY, hum / 400, ts))
    if pressure != 0xFFFF:
        readings.append(Reading(did, Quantity.PRESSURE, (pressure + 50000) / 100, ts))
    if power >> 5 != 0x7FF:
        readings.append(Reading(did, Quantity.VOLTAGE, ((power >> 5) + 1600) / 1000, ts))
    return Decoded(fmt=FMT, device_id=did, model=MODEL, kind=DeviceKind.SENSOR, readings=tuple(readings))
