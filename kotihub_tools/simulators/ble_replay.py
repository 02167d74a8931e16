"""Recorded real advertisements, replayed through the driver's own scanner callback (demo, tests, no radio).

Each recording is a vector from protocols.md §1 with its source; addresses marked "assigned" were not part of the
source vector (plaintext formats do not depend on them). The three bind keys are the public test keys published
with those vectors, not secrets of any real household.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final, NamedTuple

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from drivers.base import HubPort
from drivers.ble.common import uuid16
from drivers.ble.driver import BleDriver


class Recording(NamedTuple):
    address: str
    local_name: str | None
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]
    rssi: int
    source: str

    def advertisement(self) -> tuple[BLEDevice, AdvertisementData]:
        """The objects bleak's BlueZ backend would hand to the detection callback for this advertisement."""
        adv = AdvertisementData(
            local_name=self.local_name,
            manufacturer_data=dict(self.manufacturer_data),
            service_data=dict(self.service_data),
            service_uuids=list(self.service_data),
            tx_power=None,
            rssi=self.rssi,
            platform_data=(),
        )
        return BLEDevice(self.address, self.local_name, None), adv


def _sd(short: int, hex_payload: str) -> dict[str, bytes]:
    return {uuid16(short): bytes.fromhex(hex_payload)}


RECORDINGS: Final[tuple[Recording, ...]] = (
    Recording(
        "A4:C1:38:8D:18:B2",
        "ATC_8D18B2",
        _sd(0xFCD2, "4002ca0903bf13"),
        {},
        -61,
        "bthome-ble tests/test_parser_v2.py test_bthome_temperature_humidity (address prefix assigned)",
    ),
    Recording(
        "3C:2E:F5:00:00:01",
        "SBHT-003C",
        _sd(0xFCD2, "44004e01642e3f45df00"),
        {},
        -70,
        "theengs/decoder tests/BLE/test_ble.cpp Shelly BLU H&T (address assigned)",
    ),
    Recording(
        "54:48:E6:8F:80:A5",
        None,
        _sd(0xFCD2, "41a47266c95f730011223378237214"),
        {},
        -66,
        "bthome-ble tests/test_v2_encryption.py (key 231d39c1d7cc1ab1aee224cd096db932)",
    ),
    Recording(
        "A4:C1:38:B4:94:4C",
        "LYWSD03MMC",
        _sd(0xFE95, "50305b05034c94b438c1a40d10041001ea01"),
        {},
        -72,
        "xiaomi-ble tests/test_parser.py test_Xiaomi_LYWSD03MMC",
    ),
    Recording(
        "A4:C1:38:02:83:F4",
        "LYWSD03MMC",
        _sd(0xFE95, "58585b0550f4830238c1a495ef58763c26000097e2abb5"),
        {},
        -75,
        "xiaomi-ble tests/test_parser.py test_Xiaomi_LYWSD03MMC_encrypted",
    ),
    Recording(
        "54:EF:44:E3:9C:BC",
        None,
        _sd(0xFE95, "5859970966bc9ce344ef5401081205000000715ebe90"),
        {},
        -80,
        "xiaomi-ble tests/test_parser.py test_Xiaomi_JTYJGD03MI_smoke",
    ),
    Recording(
        "A4:C1:38:D5:D4:98",
        "ATC_D5D498",
        _sd(0x181A, "a4c138d5d49801453e510b7b62"),
        {},
        -68,
        "theengs/decoder tests/BLE/test_ble.cpp atc1441 LYWSD03MMC",
    ),
    Recording(
        "A4:C1:38:CF:01:56",
        "ATC_CF0156",
        _sd(0x181A, "5601cf38c1a44008bd13470c64cc0f"),
        {},
        -64,
        "theengs/decoder tests/BLE/test_ble.cpp pvvx custom LYWSD03MMC",
    ),
    Recording(
        "CB:B8:33:4C:88:4F",
        "Ruuvi 884F",
        {},
        {0x0499: bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")},
        -77,
        "ruuvi/ruuvi-sensor-protocols dataformat_05.md valid data",
    ),
)

# The published test keys for the encrypted recordings above, under the driver's credential names.
RECORDED_BINDKEYS: Final[dict[str, bytes]] = {
    "ble.bindkey.5448e68f80a5": b"231d39c1d7cc1ab1aee224cd096db932",
    "ble.bindkey.a4c1380283f4": b"e9ea895fac7cca6d30532432a516f3a8",
    "ble.bindkey.54ef44e39cbc": b"5b51a7c91cde6707c9ef18dfda143a58",
}


class RecordedCredentials:
    """A :class:`drivers.base.Credentials` holding only the recordings' public test keys (demo and tests)."""

    def get(self, name: str) -> bytes | None:
        return RECORDED_BINDKEYS.get(name)


async def replay(
    driver: BleDriver,
    hub: HubPort,
    *,
    stop: asyncio.Event,
    interval: float = 1.0,
    recordings: Sequence[Recording] = RECORDINGS,
    rounds: int | None = None,
) -> int:
    """Feeds ``recordings`` through ``driver.on_advertisement``, one every ``interval`` s, while the driver delivers
    to ``hub``; until ``stop`` is set or ``rounds`` passes are done. Everything fed is delivered before it returns.
    Returns how many advertisements were fed."""
    fed = 0
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(driver.serve(hub, scan=False), name="ble-replay-serve")
        try:
            done = 0
            while not stop.is_set() and (rounds is None or done < rounds):
                for recording in recordings:
                    driver.on_advertisement(*recording.advertisement())
                    fed += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
                    if stop.is_set():
                        break
                done += 1
            await driver.flush(hub)
        finally:
            serving.cancel()
    return fed
