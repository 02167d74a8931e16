"""LYWSD03MMC and kin with custom firmware, service data 0x181A: atc1441 (13 bytes) and pvvx "custom" (15 bytes).

atc1441 is big-endian in 0.1 °C with the MAC in written order; pvvx is little-endian in 0.01 units with the MAC
reversed (pvvx/ATC_MiThermometer README, "Bluetooth Advertising Formats"). The length tells them apart. The
11-byte encrypted pvvx variant is not decoded: its layout is not published beside its bind-key scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from drivers.ble.common import Decoded, Reason, Rejected, mac_bytes, uuid16
from gateway.model import DeviceKind, Quantity, Reading, device_id

FMT_ATC1441: Final = "atc1441"
FMT_PVVX: Final = "pvvx"
FMT: Final = "atc"
SERVICE_UUID: Final = uuid16(0x181A)
MODEL_ATC1441: Final = "LYWSD03MMC (atc1441 firmware)"
MODEL_PVVX: Final = "LYWSD03MMC (pvvx firmware)"


def decode(address: str, service_data: Mapping[str, bytes], *, ts: float = 0.0) -> Decoded | Rejected | None:
    """Decodes the 0x181A service data in one advertisement, or None if it carries none."""
    data = service_data.get(SERVICE_UUID)
    if data is None:
        return None
    n = len(data)
    did = device_id("ble", address)
    # Both variants carry the sender's MAC (pvvx little-endian); another MAC is a packet relayed or forged.
    mac = mac_bytes(address) if n in (13, 15) else None
    if mac is not None and data[:6] != (mac if n == 13 else mac[::-1]):
        return Rejected(FMT, Reason.MAC_MISMATCH)
    if n == 13:
        temp = int.from_bytes(data[6:8], "big", signed=True) / 10
        readings = (
            Reading(did, Quantity.TEMPERATURE, temp, ts),
            Reading(did, Quantity.HUMIDITY, float(data[8]), ts),
            Reading(did, Quantity.BATTERY, float(data[9]), ts),
            Reading(did, Quantity.VOLTAGE, int.from_bytes(data[10:12], "big") / 1000, ts),
        )
        return Decoded(fmt=FMT_ATC1441, device_id=did, model=MODEL_ATC1441, kind=DeviceKind.SENSOR, readings=readings)
    if n == 15:
        readings = (
            Reading(did, Quantity.TEMPERATURE, int.from_bytes(data[6:8], "little", signed=True) / 100, ts),
            Reading(did, Quantity.HUMIDITY, int.from_bytes(data[8:10], "little") / 100, ts),
            Reading(did, Quantity.BATTERY, float(data[12]), ts),
            Reading(did, Quantity.VOLTAGE, int.from_bytes(data[10:12], "little") / 1000, ts),
        )
        return Decoded(fmt=FMT_PVVX, device_id=did, model=MODEL_PVVX, kind=DeviceKind.SENSOR, readings=readings)
    if n == 11:
        return Rejected(FMT, Reason.UNSUPPORTED)  # pvvx encrypted custom format
    return Rejected(FMT, Reason.TRUNCATED if n < 15 else Reason.OVERSIZED)
