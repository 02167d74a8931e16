"""The BLE driver end to end without a radio: bleak's own AdvertisementData and BLEDevice objects through the
same callback bleak calls, into a recording HubPort; bleak's real scanner facade with an injected backend; and the
real BlueZ backend on this machine, which has no D-Bus system bus, for the no-adapter path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner

from drivers import driver_class
from drivers.ble.common import uuid16
from drivers.ble.driver import BleConfig, BleDriver, OfflineAfter, or_patterns
from gateway.model import DeviceKind, EventKind, Lane, Quantity, SmokeState
from kotihub_tools.simulators.ble_replay import RECORDINGS, RecordedCredentials, Recording, replay
from tests.support.recording_hub import RecordingHub

BTHOME = uuid16(0xFCD2)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoCredentials:
    def get(self, name: str) -> bytes | None:
        return None


class DictCredentials:
    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    def get(self, name: str) -> bytes | None:
        self.asked.append(name)
        return self.secrets.get(name)


def _adv(address: str, payload: str, *, uuid: str = BTHOME, rssi: int = -60) -> tuple[BLEDevice, AdvertisementData]:
    return Recording(address, None, {uuid: bytes.fromhex(payload)}, {}, rssi, "test").advertisement()


def test_registry_names_this_driver() -> None:
    assert driver_class("ble") is BleDriver
    assert BleDriver.Config is BleConfig


async def _replay_all(driver: BleDriver, hub: RecordingHub) -> int:
    return await replay(driver, hub, stop=asyncio.Event(), interval=0, rounds=1)


def test_replayed_recordings_reach_the_hub(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    driver = BleDriver(BleConfig(adopt=("*",)), RecordedCredentials())
    hub = RecordingHub()
    fed = asyncio.run(_replay_all(driver, hub))
    assert fed == len(RECORDINGS)
    addresses = {r.address for r in RECORDINGS}
    assert {d.address for d in hub.devices} == addresses
    assert {d.device_id for d in hub.devices} == {"ble:" + a.lower() for a in addresses}
    values = {(r.device_id, r.quantity): r.value for r in hub.received}
    assert values[("ble:a4:c1:38:8d:18:b2", Quantity.TEMPERATURE)] == 25.06
    assert values[("ble:54:48:e6:8f:80:a5", Quantity.HUMIDITY)] == 50.55  # encrypted BTHome, key from credentials
    assert values[("ble:a4:c1:38:02:83:f4", Quantity.HUMIDITY)] == 46.7  # encrypted MiBeacon
    assert values[("ble:a4:c1:38:d5:d4:98", Quantity.VOLTAGE)] == 2.939
    assert values[("ble:cb:b8:33:4c:88:4f", Quantity.PRESSURE)] == 1000.44
    (smoke,) = [e for e in hub.events if e.kind is EventKind.SMOKE]
    assert (smoke.device_id, smoke.state, smoke.lane) == ("ble:54:ef:44:e3:9c:bc", SmokeState.SMOKE, Lane.ALARM)
    smoke_device = next(d for d in hub.devices if d.device_id == smoke.device_id)
    assert (smoke_device.kind, smoke_device.model) == (DeviceKind.SMOKE_DETECTOR, "JTYJGD03MI")
    health = driver.health()
    assert (health.counters.malformed, health.devices, health.pending) == (0, len(addresses), 0)
    # No addresses or values in anything logged at INFO or above.
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            message = record.getMessage()
            assert not any(a in message.upper() for a in addresses), message


def test_identical_advertisements_are_stored_once_until_the_window_passes() -> None:
    clock = Clock()
    driver = BleDriver(BleConfig(adopt=("*",), dedupe_window_s=30.0), NoCredentials(), clock=clock)
    hub = RecordingHub()

    async def scenario() -> None:
        device, adv = _adv("A4:C1:38:8D:18:B2", "4002ca0903bf13")
        driver.on_advertisement(device, adv)
        clock.now += 2
        driver.on_advertisement(device, adv)
        await driver.flush(hub)
        assert len(hub.received) == 2
        clock.now += 40  # past the window: the unchanged value is worth storing again as a fresh sample
        driver.on_advertisement(device, adv)
        await driver.flush(hub)

    asyncio.run(scenario())
    assert len(hub.received) == 4
    assert driver.health().counters.duplicates == 1
    assert len(hub.devices) == 2  # re-announced once per window, not per advertisement


def test_smoke_transitions_are_never_deduplicated() -> None:
    driver = BleDriver(BleConfig(adopt=("*",)), NoCredentials(), clock=Clock())
    hub = RecordingHub()

    async def scenario() -> None:
        for payload in ("402901", "402900", "402901", "402901"):
            driver.on_advertisement(*_adv("11:22:33:44:55:04", payload))
        await driver.flush(hub)

    asyncio.run(scenario())
    assert [e.state for e in hub.events] == [SmokeState.SMOKE, SmokeState.CLEAR, SmokeState.SMOKE]
    assert driver.health().counters.duplicates == 1


def test_bind_key_lookup_and_bad_keys() -> None:
    recording = next(r for r in RECORDINGS if r.address == "54:48:E6:8F:80:A5")
    creds = DictCredentials({"ble.bindkey.5448e68f80a5": b"not hex\n"})
    driver = BleDriver(BleConfig(adopt=("*",)), creds, clock=Clock())
    hub = RecordingHub()

    async def scenario() -> None:
        driver.on_advertisement(*recording.advertisement())
        await driver.flush(hub)

    asyncio.run(scenario())
    assert creds.asked == ["ble.bindkey.5448e68f80a5"]
    assert hub.received == []
    health = driver.health()
    assert (health.bad_bindkeys, health.counters.malformed) == (1, 1)

    creds = DictCredentials({"ble.bindkey.5448e68f80a5": b" 231D39C1D7CC1AB1AEE224CD096DB932\n"})
    driver = BleDriver(BleConfig(adopt=("*",)), creds, clock=Clock())
    asyncio.run(scenario())
    assert [r.value for r in hub.received] == [25.06, 50.55]


def test_bad_payloads_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.ble.driver")
    driver = BleDriver(BleConfig(adopt=("*",)), NoCredentials(), clock=Clock())
    for payload in ("4002ca", "4002cb", "40ff01"):
        driver.on_advertisement(*_adv("11:22:33:44:55:0C", payload))
    health = driver.health()
    assert health.counters.malformed == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # truncated once, unknown object once
    assert all("11:22:33" not in w for w in warnings)


def test_irrelevant_advertisements_are_ignored_cheaply() -> None:
    driver = BleDriver(BleConfig(adopt=("*",)), NoCredentials())
    device = BLEDevice("AA:BB:CC:DD:EE:FF", "phone", None)
    adv = AdvertisementData("phone", {0x004C: b"\x02\x15"}, {uuid16(0x180F): b"\x64"}, [], None, -50, ())
    driver.on_advertisement(device, adv)
    assert driver.health().counters.messages == 0


def test_offline_and_back_online() -> None:
    clock = Clock()
    config = BleConfig(adopt=("*",), offline_after=OfflineAfter(sensor=600.0, smoke_detector=3600.0, sleepy=7200.0))
    driver = BleDriver(config, NoCredentials(), clock=clock)
    hub = RecordingHub()

    async def scenario() -> None:
        driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002ca0903bf13"))  # sensor
        driver.on_advertisement(*_adv("11:22:33:44:55:04", "402900"))  # smoke detector
        driver.on_advertisement(*_adv("3C:2E:F5:00:00:01", "44004e01642e3f45df00"))  # trigger-based
        assert driver.offline_events(clock.now + 599) == []
        offline = driver.offline_events(clock.now + 601)
        assert [(e.device_id, e.state) for e in offline] == [("ble:a4:c1:38:8d:18:b2", "offline")]
        assert driver.offline_events(clock.now + 601) == []  # said once
        offline = driver.offline_events(clock.now + 3601)
        assert [e.device_id for e in offline] == ["ble:11:22:33:44:55:04"]
        assert [e.device_id for e in driver.offline_events(clock.now + 7201)] == ["ble:3c:2e:f5:00:00:01"]
        clock.now += 8000
        driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002cb0903bf13"))
        await driver.flush(hub)

    asyncio.run(scenario())
    availability = [(e.device_id, e.state) for e in hub.events if e.kind is EventKind.AVAILABILITY]
    assert availability == [("ble:a4:c1:38:8d:18:b2", "online")]
    assert driver.health().online == 1


def test_readings_survive_a_failing_hub_call() -> None:
    driver = BleDriver(BleConfig(adopt=("*",)), NoCredentials(), clock=Clock())
    hub = RecordingHub(fail_readings=1)

    async def scenario() -> None:
        driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002ca0903bf13"))
        with pytest.raises(OSError, match="store unavailable"):
            await driver.flush(hub)
        await driver.flush(hub)

    asyncio.run(scenario())
    assert [r.value for r in hub.received] == [25.06, 50.55]


def test_pending_readings_are_bounded_and_drops_counted() -> None:
    clock = Clock()
    driver = BleDriver(BleConfig(adopt=("*",), max_pending_readings=3), NoCredentials(), clock=clock)
    driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002ca0903bf13"))
    driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002cb0903bf13"))
    health = driver.health()
    assert (health.pending, health.dropped_readings) == (3, 1)


class FakeScanner(BaseBleakScanner):
    """A bleak scanner backend that 'hears' the recordings when started, like BlueZ would."""

    created: ClassVar[list[dict[str, Any]]] = []

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        FakeScanner.created.append({"scanning_mode": scanning_mode, **kwargs})

    async def start(self) -> None:
        self.seen_devices = {}
        for recording in RECORDINGS:
            _, adv = recording.advertisement()
            device = self.create_or_update_device(recording.address, recording.address, None, None, adv)
            self.call_detection_callbacks(device, adv)

    async def stop(self) -> None:
        pass


def test_run_with_a_scanner_backend_delivers_and_reports_ok() -> None:
    FakeScanner.created.clear()
    driver = BleDriver(BleConfig(adopt=("*",)), RecordedCredentials(), scanner_backend=FakeScanner)
    hub = RecordingHub()

    async def scenario() -> list[Any]:
        task = asyncio.create_task(driver.run(hub))
        await asyncio.wait_for(driver.wait_adapter_state("ok"), 5)
        await hub.wait_for(lambda: any(e.kind is EventKind.SMOKE for e in hub.events))
        # every recorded device but the smoke detector sends readings
        await hub.wait_for(lambda: len({r.device_id for r in hub.received}) == len({r.address for r in RECORDINGS}) - 1)
        found = await driver.discover(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return found

    found = asyncio.run(scenario())
    (created,) = FakeScanner.created
    assert created["scanning_mode"] == "passive"
    assert created["bluez"] == {"adapter": "hci0", "or_patterns": or_patterns(BleConfig().formats)}
    assert driver.health().adapter == "ok"
    assert {(d.address, d.rssi) for d in found} == {(r.address, r.rssi) for r in RECORDINGS}


def test_or_patterns_cover_each_format() -> None:
    patterns = or_patterns(["bthome", "atc", "mibeacon", "ruuvi", "bthome"])
    assert [(p.ad_data_type, p.content_of_pattern) for p in patterns] == [
        (0x16, b"\xd2\xfc"),
        (0x16, b"\x1a\x18"),
        (0x16, b"\x95\xfe"),
        (0xFF, b"\x99\x04"),
    ]


def test_without_bluez_run_reports_missing_and_retries_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """This machine has no D-Bus system bus: bleak's real BlueZ backend fails to start."""
    caplog.set_level(logging.DEBUG, logger="drivers.ble.driver")
    driver = BleDriver(BleConfig(adopt=("*",), adapter_retry_s=0.001, adapter_retry_max_s=0.002), NoCredentials())
    hub = RecordingHub()

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(driver.run(hub))
        await asyncio.wait_for(driver.wait_adapter_state("missing", attempts=3), 10)
        health = driver.health()
        found = await driver.discover(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert found == []
        return health

    health = asyncio.run(scenario())
    assert health.adapter == "missing"
    assert "D-Bus" in health.adapter_reason
    assert health.adapter_attempts >= 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # said once; the retries go to DEBUG
    assert "BLE adapter unavailable" in warnings[0].getMessage()


def test_default_retry_is_rare() -> None:
    config = BleConfig()
    assert config.adapter_retry_s >= 30
    assert config.adapter_retry_max_s >= 600


def test_disabled_formats_are_not_decoded() -> None:
    driver = BleDriver(BleConfig(adopt=("*",), formats=("ruuvi",)), NoCredentials(), clock=Clock())
    hub = RecordingHub()

    async def scenario() -> None:
        for recording in RECORDINGS:
            driver.on_advertisement(*recording.advertisement())
        await driver.flush(hub)

    asyncio.run(scenario())
    assert {d.device_id for d in hub.devices} == {"ble:cb:b8:33:4c:88:4f"}


@pytest.mark.parametrize(
    "table",
    [{"formats": []}, {"formats": ["zigbee"]}, {"scanning_mode": "loud"}, {"adapter_retry_s": 0}, {"bindkey": "x"}],
)
def test_config_rejects_bad_tables(table: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(table, BleConfig)


def test_config_from_a_toml_table() -> None:
    table = {"adapter": "hci1", "scanning_mode": "active", "formats": ["bthome"], "offline_after": {"sensor": 120}}
    config = msgspec.convert(table, BleConfig)
    assert (config.adapter, config.scanning_mode, config.formats) == ("hci1", "active", ("bthome",))
    assert config.offline_after.sensor == 120.0
    assert config.offline_after.smoke_detector == 90_000.0


def test_a_smoke_detector_stays_one_when_it_sends_only_battery() -> None:
    clock = Clock()
    driver = BleDriver(BleConfig(adopt=("*",), dedupe_window_s=0), NoCredentials(), clock=clock)
    hub = RecordingHub()

    async def scenario() -> None:
        driver.on_advertisement(*_adv("11:22:33:44:55:04", "402900"))
        await driver.flush(hub)
        clock.now += 1
        driver.on_advertisement(*_adv("11:22:33:44:55:04", "400150"))  # battery 80 %, no smoke object
        await driver.flush(hub)

    asyncio.run(scenario())
    assert [d.kind for d in hub.devices] == [DeviceKind.SMOKE_DETECTOR, DeviceKind.SMOKE_DETECTOR]
    assert [r.value for r in hub.received] == [80]


def test_a_bug_in_handling_is_contained_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.ble.driver")

    class Exploding:
        def get(self, name: str) -> bytes | None:
            raise RuntimeError("credential store broke")

    driver = BleDriver(BleConfig(adopt=("*",)), Exploding())
    driver.on_advertisement(*_adv("11:22:33:44:55:04", "402900"))
    driver.on_advertisement(*_adv("11:22:33:44:55:05", "402900"))
    assert driver.health().internal_errors == 2
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_replay_stops_promptly_when_asked() -> None:
    driver = BleDriver(BleConfig(adopt=("*",)), RecordedCredentials())
    hub = RecordingHub()

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(replay(driver, hub, stop=stop, interval=3600))
        await hub.wait_for(lambda: len(hub.devices) == 1)
        stop.set()
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(scenario()) == 1
    assert [d.address for d in hub.devices] == [RECORDINGS[0].address]


def test_availability_events_can_be_left_to_the_hub() -> None:
    clock = Clock()
    config = BleConfig(adopt=("*",), availability_events=False, offline_after=OfflineAfter(sensor=60.0))
    driver = BleDriver(config, NoCredentials(), clock=clock)
    hub = RecordingHub()

    async def scenario() -> None:
        driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002ca0903bf13"))
        assert len(driver.offline_events(clock.now + 61)) == 1  # still tracked for health and discover
        assert driver.health().online == 0
        clock.now += 100
        driver.on_advertisement(*_adv("A4:C1:38:8D:18:B2", "4002cb0903bf13"))
        await driver.flush(hub)

    asyncio.run(scenario())
    assert hub.events == []
    assert driver.health().online == 1


def test_shipped_example_documents_every_key_with_its_default() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "ble.toml"
    table = tomllib.loads(example.read_text())["drivers"]["ble"]
    assert table.pop("enabled") is True
    assert msgspec.convert(table, BleConfig) == BleConfig()
    assert set(table) == set(BleConfig.__struct_fields__)


class StopFailsScanner(FakeScanner):
    async def stop(self) -> None:
        raise OSError("bluetoothd went away")


def test_cancelling_the_scan_ends_it_even_if_the_scanner_fails_to_stop() -> None:
    driver = BleDriver(BleConfig(adopt=("*",)), NoCredentials(), scanner_backend=StopFailsScanner)

    async def scenario() -> bool:
        # The scan loop itself, not run(): if it swallowed the cancellation, run()'s TaskGroup would wait forever.
        scan = asyncio.create_task(driver._scan_forever())
        await asyncio.wait_for(driver.wait_adapter_state("ok"), 5)
        scan.cancel()
        await asyncio.wait({scan}, timeout=5)
        ended = scan.done()
        scan.cancel()  # so that a regression fails this test instead of hanging it
        with contextlib.suppress(asyncio.CancelledError):
            await scan
        return ended

    assert asyncio.run(scenario()) is True
    assert driver.health().adapter == "ok"  # not mistaken for a missing adapter on the way out


class SilentScanner(FakeScanner):
    async def start(self) -> None:
        self.seen_devices = {}


def test_a_silent_scanner_is_restarted() -> None:
    driver = BleDriver(
        BleConfig(adopt=("*",), rescan_after_silence_s=0.01), NoCredentials(), scanner_backend=SilentScanner
    )

    async def scenario() -> None:
        task = asyncio.create_task(driver.run(RecordingHub()))
        await asyncio.wait_for(driver.wait_adapter_state("ok", attempts=3), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    health = driver.health()
    assert health.scanner_restarts >= 2
    assert health.adapter == "ok"
