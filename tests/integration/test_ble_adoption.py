"""Only the household's BLE devices: a hub in a block of flats hears the neighbours and rotating addresses.

Advertisements go through the callback bleak calls (its own BLEDevice and AdvertisementData objects), the driver
serves a recording hub, and what the driver remembers is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import random
import struct
import tracemalloc

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from drivers.base import DriverContext
from drivers.ble.common import uuid16
from drivers.ble.driver import BleConfig, BleDriver
from drivers.memory import VolatileMemory
from kotihub_tools.simulators.ble_replay import RECORDINGS, RecordedCredentials, Recording
from tests.support import ble_encode
from tests.support.recording_hub import RecordingHub

BTHOME, ATC = uuid16(0xFCD2), uuid16(0x181A)
ADVERTISEMENTS = 100_000
BOUND = 64
ALLOWLISTED = "A4:C1:38:00:00:01"
ADOPTED = "A4:C1:38:00:00:02"
KEYED = next(r for r in RECORDINGS if r.address == "54:48:E6:8F:80:A5")  # its bind key is a credential
MEMORY_BOUND = 1_500_000
"""Bytes the driver may grow by while fed 100,000 advertisements after warming up: its tables are bounded by
entries (BOUND), so this is a margin over their fixed size, not a budget for growth."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _adv(address: str, service_data: dict[str, bytes]) -> tuple[BLEDevice, AdvertisementData]:
    return Recording(address, None, service_data, {}, -70, "test").advertisement()


def _mac(rng: random.Random) -> str:
    raw = rng.getrandbits(48).to_bytes(6, "big")
    return ":".join(f"{b:02X}" for b in raw)


def _bthome(rng: random.Random) -> dict[str, bytes]:
    temp = rng.randint(-2000, 3500)  # 0.01 °C
    return {BTHOME: ble_encode.bthome(b"\x02" + struct.pack("<h", temp) + b"\x03" + struct.pack("<H", 5000))}


def _stranger(rng: random.Random) -> tuple[BLEDevice, AdvertisementData]:
    address = _mac(rng)
    kind = rng.random()
    if kind < 0.5:  # valid BTHome from a neighbour or a rotating address
        return _adv(address, _bthome(rng))
    if kind < 0.8:  # garbage under a format we decode
        return _adv(address, {rng.choice((BTHOME, ATC)): rng.randbytes(rng.randint(0, 30))})
    # A valid-looking ATC packet carrying another device's MAC
    return _adv(address, {ATC: ble_encode.atc1441(rng.randbytes(6), 215, 45, 90, 3000, rng.randint(0, 255))})


def test_100k_advertisements_record_only_adopted_devices_and_memory_stays_bounded() -> None:
    rng = random.Random(20261129)
    clock = Clock()
    config = BleConfig(adopt=(ALLOWLISTED,), max_devices=BOUND, dedupe_window_s=0.0)
    driver = BleDriver(config, RecordedCredentials(), clock=clock)
    hub = RecordingHub()
    household = {f"ble:{a.lower()}" for a in (ALLOWLISTED, ADOPTED, KEYED.address)}
    fed_household = 0

    async def main() -> None:
        nonlocal fed_household
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(driver.serve(hub, scan=False))
            await asyncio.sleep(0)  # let serve() load what the driver remembers before feeding
            assert await driver.adopt(f"ble:{ADOPTED.lower()}")

            def feed(count: int) -> None:
                nonlocal fed_household
                for i in range(count):
                    clock.now += 0.01
                    if i % 1000 == 0:  # the household's own sensors, now and then
                        fed_household += 3
                        driver.on_advertisement(*_adv(ALLOWLISTED, _bthome(rng)))
                        driver.on_advertisement(*_adv(ADOPTED, _bthome(rng)))
                        driver.on_advertisement(*KEYED.advertisement())
                    driver.on_advertisement(*_stranger(rng))

            feed(5_000)  # warm-up: caches and tables reach their steady size
            await driver.flush(hub)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range((ADVERTISEMENTS - 5_000) // 5_000):
                    feed(5_000)
                    await driver.flush(hub)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            serving.cancel()
        assert grown < MEMORY_BOUND, f"the driver grew by {grown} bytes"

    asyncio.run(main())
    recorded = {d.device_id for d in hub.devices}
    assert recorded == household, "only adopted devices are devices of this household"
    assert {r.device_id for r in hub.received} <= household
    assert {r.device_id for r in hub.received} >= {f"ble:{ALLOWLISTED.lower()}", f"ble:{ADOPTED.lower()}"}
    health = driver.health()
    assert health.strangers == ADVERTISEMENTS
    assert health.counters.messages == ADVERTISEMENTS + fed_household
    for table in (
        driver._heard,
        driver._last_payload,
        driver._keys,
        driver._replay._counters,
        driver._replay._packet_ids,
        driver._candidates,
    ):
        assert len(table) <= BOUND
    assert len(driver._heard) == 3  # strangers never enter the per-device tables


def test_even_adopting_everything_keeps_per_address_tables_bounded() -> None:
    rng = random.Random(7)
    driver = BleDriver(BleConfig(adopt=("*",), max_devices=BOUND), RecordedCredentials(), clock=Clock())
    for _ in range(5_000):
        driver.on_advertisement(*_adv(_mac(rng), _bthome(rng)))
    assert driver.strangers == 0
    for table in (driver._heard, driver._last_payload, driver._keys, driver._pending_devices):
        assert len(table) <= BOUND, table


def test_discover_lists_strangers_for_adoption_and_forgets_them_after() -> None:
    clock = Clock()
    driver = BleDriver(BleConfig(max_devices=BOUND), RecordedCredentials(), clock=clock)
    hub = RecordingHub()
    neighbour = "A4:C1:38:AA:BB:CC"

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(driver.serve(hub, scan=False))
            listing = tg.create_task(driver.discover(0.5))
            async with asyncio.timeout(5):
                while not driver._discovering:  # until the discovery listens
                    await asyncio.sleep(0)
            driver.on_advertisement(*_adv(neighbour, _bthome(random.Random(1))))
            found = await listing
            serving.cancel()
        (candidate,) = found
        assert (candidate.device_id, candidate.model) == (f"ble:{neighbour.lower()}", "BTHome v2")
        assert len(driver._candidates) == 0, "candidates are forgotten once the discovery ends"
        assert hub.devices == [] and hub.received == []  # hearing it during discovery did not record it

    asyncio.run(main())


def test_adoption_and_replay_counters_survive_a_restart() -> None:
    memory = VolatileMemory()  # stands in for the store (the daemon's StoreMemory is tested on its own)
    encrypted = KEYED.advertisement()
    plain_device = "A4:C1:38:00:00:09"

    async def run(feed: list[tuple[BLEDevice, AdvertisementData]], *, adopt: str | None = None) -> RecordingHub:
        context = DriverContext(memory=memory)
        driver = BleDriver(BleConfig(dedupe_window_s=0.0), RecordedCredentials(), context, clock=Clock())
        hub = RecordingHub()
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(driver.serve(hub, scan=False))
            await asyncio.sleep(0)
            if adopt is not None:
                await driver.adopt(adopt)
            for advertisement in feed:
                driver.on_advertisement(*advertisement)
            await driver.flush(hub)
            serving.cancel()
        return hub

    plain = _adv(plain_device, _bthome(random.Random(3)))
    first = asyncio.run(run([encrypted, plain], adopt=f"ble:{plain_device.lower()}"))
    assert {r.device_id for r in first.received} == {f"ble:{KEYED.address.lower()}", f"ble:{plain_device.lower()}"}
    # After a restart: the adopted device is still the household's, and the captured encrypted packet, replayed,
    # is refused (its counter is remembered), where a hub with memory-only counters would store it again.
    second = asyncio.run(run([encrypted, plain]))
    assert {r.device_id for r in second.received} == {f"ble:{plain_device.lower()}"}
