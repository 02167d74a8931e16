"""The BLE driver: scans with bleak, decodes advertisements in the scanner callback, and hands results to the hub.

``on_advertisement`` is the function bleak calls; it is synchronous and cheap (decode, dedupe, queue), and one
task delivers what it queued to the hub, device sightings first, then events (smoke on the alarm lane), then
readings in batches. Without a Bluetooth adapter or BlueZ the driver does not crash-loop: it reports
``adapter: missing`` with the reason in :meth:`BleDriver.health` and retries rarely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from drivers.base import Credentials, Discovered, Driver, DriverContext, DriverHealth, HubPort, Link
from drivers.ble.common import BENIGN, Decoded, Reason, ReplayState, mac_bytes, uuid16
from drivers.ble.decode import decode_advertisement, is_relevant
from drivers.memory import Memory
from gateway.lru import Lru
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Reading, device_id

log = logging.getLogger(__name__)

Format = Literal["bthome", "atc", "mibeacon", "ruuvi"]
ALL_FORMATS: Final[tuple[Format, ...]] = ("bthome", "atc", "mibeacon", "ruuvi")


def or_patterns(formats: tuple[Format, ...] | list[Format]) -> list[OrPattern]:
    """The BlueZ advertisement-monitor patterns passive scanning needs: one per format we decode.

    Service data AD (0x16) starts with the 16-bit UUID little-endian; manufacturer data (0xFF) with the company id.
    """
    table: dict[Format, OrPattern] = {
        "bthome": OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc"),
        "atc": OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x1a\x18"),
        "mibeacon": OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x95\xfe"),
        "ruuvi": OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x99\x04"),
    }
    return [table[f] for f in dict.fromkeys(formats)]


_SERVICE_UUIDS: Final[dict[Format, str]] = {
    "bthome": uuid16(0xFCD2),
    "atc": uuid16(0x181A),
    "mibeacon": uuid16(0xFE95),
}
_COMPANY_IDS: Final[dict[Format, int]] = {"ruuvi": 0x0499}


Seconds = Annotated[float, msgspec.Meta(gt=0)]
Mac = Annotated[str, msgspec.Meta(pattern=r"^(\*|[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5})$")]

ADOPTED_NS: Final = "ble.adopted"
REPLAY_NS: Final = "ble.replay"
MAX_CANDIDATES: Final = 256
"""Unadopted devices remembered while a ``discover`` runs (and only then), so the technician can adopt them."""


class OfflineAfter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silence after which a device is reported offline, per kind of device, in seconds."""

    sensor: Seconds = 3600.0
    smoke_detector: Seconds = 90_000.0
    """Smoke detectors speak on change and a daily heartbeat; 25 h, like Zigbee2MQTT's passive timeout."""
    sleepy: Seconds = 90_000.0
    """Trigger-based senders (BTHome flag, sleepy Xiaomi models) may be silent for long."""


class BleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[drivers.ble]`` table."""

    adapter: str = "hci0"
    scanning_mode: Literal["passive", "active"] = "passive"
    """Passive needs BlueZ ≥ 5.56 with ``bluetoothd --experimental`` (advertisement monitors); active works anywhere."""
    formats: Annotated[tuple[Format, ...], msgspec.Meta(min_length=1)] = ALL_FORMATS
    """Formats to decode; in passive mode also the BlueZ or_patterns asked for."""
    dedupe_window_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """An advertisement identical to the device's previous one within this window is not decoded or stored again."""
    offline_after: OfflineAfter = OfflineAfter()
    availability_events: bool = True
    """Send ``availability`` offline/online events from these timeouts; off when the hub's own last-seen tracking
    (``[devices.offline_after]``) should be the only source. The timeouts still drive ``health()`` and ``discover``."""
    adapter_retry_s: Seconds = 60.0
    """First retry after the adapter or BlueZ was unavailable; doubles up to ``adapter_retry_max_s``."""
    adapter_retry_max_s: Seconds = 900.0
    rescan_after_silence_s: Seconds = 1800.0
    """Restart the scanner after this long without any advertisement: BlueZ can stop delivering without an error."""
    max_pending_readings: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    """Readings held while the hub is busy; beyond this the oldest are dropped and counted (never events)."""
    bindkey_refresh_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """How long a bind-key lookup (hit or miss) is cached, so a newly provisioned key takes effect."""
    adopt: tuple[Mac, ...] = ()
    """The household's devices by MAC, besides those adopted with ``kotihub adopt`` and those with a bind key
    (``ble.bindkey.<mac>``). Advertisements of any other device are counted (``strangers``) and nothing about them
    is kept. ``"*"`` adopts every device heard: for a test bench or the demo, never in a block of flats."""
    max_devices: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 1024
    """The bound of every per-address table (heard devices, payload fingerprints, bind-key lookups, replay
    counters); least recently used entries go first. Keep it above the number of adopted devices."""


class _Heard(msgspec.Struct, kw_only=True):
    address: str
    rssi: float
    last: float
    model: str = ""
    kind: DeviceKind = DeviceKind.SENSOR
    fmt: str = ""
    sleepy: bool = False
    decoded: bool = False
    online: bool = True
    announced: float = 0.0


class BleHealth(DriverHealth, frozen=True, kw_only=True):
    """The BLE driver's health: the adapter (``ok``, ``missing`` with its reason) and what was heard."""

    adapter: str
    adapter_reason: str | None
    adapter_attempts: int
    adapter_retry_in_s: float | None
    """Seconds until the next attempt to open a missing adapter; None while it is open."""
    scanner_restarts: int
    scanning_mode: str
    devices: int
    """Devices heard whose advertisements decoded."""
    adopted: int
    strangers: int
    online: int
    pending: int
    """Readings and events decoded but not yet handed to the hub."""
    dropped_readings: int
    partial: int
    bad_bindkeys: int
    internal_errors: int


class BleDriver(Driver):
    """Bluetooth LE sensors (BTHome v2, ATC/pvvx, MiBeacon, RuuviTag RAWv2) through bleak."""

    name: ClassVar[str] = "ble"
    Config: ClassVar[type[msgspec.Struct]] = BleConfig

    def __init__(
        self,
        config: BleConfig,
        credentials: Credentials,
        context: DriverContext | None = None,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, credentials, context)
        self.config: BleConfig = config
        self._backend = scanner_backend
        self._clock = clock
        # Only when some formats are switched off do advertisements get filtered (the common case pays nothing).
        self._only: tuple[frozenset[str], frozenset[int]] | None = None
        if set(config.formats) != set(ALL_FORMATS):
            self._only = (
                frozenset(u for f, u in _SERVICE_UUIDS.items() if f in config.formats),
                frozenset(c for f, c in _COMPANY_IDS.items() if f in config.formats),
            )
        bound = config.max_devices
        self._replay = ReplayState(bound)
        self._heard: Lru[str, _Heard] = Lru(bound)
        self._last_payload: Lru[str, tuple[tuple[Any, ...], float]] = Lru(bound)
        self._keys: Lru[str, tuple[bytes | None, float]] = Lru(bound)
        self._adopt_all = "*" in config.adopt
        self._configured = frozenset(a.upper() for a in config.adopt if a != "*")
        self._adopted: set[str] = set(self._configured)
        self._candidates: Lru[str, Discovered] = Lru(MAX_CANDIDATES)
        self._discovering = 0
        self.memory: Memory = self.context.memory
        """Where adopted devices and replay counters persist (the daemon's store); loaded when serving starts."""
        self.strangers = 0
        self._pending_devices: Lru[str, DeviceInfo] = Lru(bound)
        self._pending_events: deque[Event] = deque()
        self._pending_readings: deque[Reading] = deque()
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._adapter_state = "not started"
        self._adapter_reason: str | None = None
        self._adapter_attempts = 0
        self._next_retry: float | None = None
        self._state_changed = asyncio.Event()
        self._told_reasons: set[str] = set()
        self._told_bad_keys: set[str] = set()
        self._activity = asyncio.Event()
        self.scanner_restarts = 0
        self.dropped_readings = 0
        self.bad_bindkeys = 0
        self.internal_errors = 0
        self.partial = 0

    # -- adoption -------------------------------------------------------------------------------------------------

    async def _load(self) -> None:
        self._adopted = set(self._configured) | set(await self.memory.load(ADOPTED_NS))
        counters: dict[tuple[str, str], int] = {}
        for key, value in (await self.memory.load(REPLAY_NS)).items():
            fmt, _, address = key.partition("|")
            counters[(fmt, address)] = int.from_bytes(value, "big")
        self._replay.restore(counters)

    def adopted(self, address: str, now: float) -> bool:
        """Whether the device at ``address`` is the household's: adopted, allowlisted, or given a bind key."""
        return self._adopt_all or address in self._adopted or self._bindkey(address, now) is not None

    async def adopt(self, device: str) -> bool:
        """Adopts ``ble:<mac>`` (or a bare MAC) as the household's; persisted. Returns False if it already was."""
        address = device.removeprefix(f"{self.name}:").upper()
        if mac_bytes(address) is None:
            raise ValueError("a BLE device is adopted by its MAC address, e.g. ble:a4:c1:38:02:83:f4")
        if address in self._adopted:
            return False
        await self.memory.save(ADOPTED_NS, address, b"1", device_id=device_id(self.name, address))
        self._adopted.add(address)
        self._candidates.pop(address, None)
        return True

    def forget(self, scope: str, target: str) -> None:
        """After an erasure: what the driver holds in memory about the erased devices goes (the store's copy went
        with the erasure). Devices in ``adopt`` stay adopted: the config is the household's own statement."""
        address = target.removeprefix(f"{self.name}:").upper() if scope == "device" else None
        if scope == "all" or address is not None:
            self._adopted = {a for a in self._adopted if a in self._configured or (address and a != address)}
            self._replay.forget(address)
            for table in (self._heard, self._last_payload, self._pending_devices):
                for key in [k for k in table if address is None or k == address]:
                    del table[key]

    def _note_candidate(
        self, address: str, service_data: dict[str, bytes], manufacturer_data: dict[int, bytes], rssi: float, now: float
    ) -> None:
        """While a discovery runs: what a stranger is, decoded without its bind key or replay state."""
        kind, model = DeviceKind.SENSOR, ""
        for result in decode_advertisement(address, service_data, manufacturer_data, ts=now):
            if isinstance(result, Decoded):
                kind, model = result.kind, result.model
        self._candidates[address] = Discovered(
            device_id=device_id(self.name, address),
            driver=self.name,
            kind=kind,
            model=model,
            address=address,
            rssi=rssi,
        )

    # -- the scanner callback -------------------------------------------------------------------------------------

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """What bleak calls for every advertisement: decode, dedupe, queue for the hub. Never raises."""
        self._activity.set()  # any advertisement shows the scanner is alive
        try:
            self._on_advertisement(device.address, adv, self._clock())
        except Exception:
            # A bug here must not break bleak's D-Bus dispatch: count it, show the traceback once, then only count.
            self.internal_errors += 1
            if self.internal_errors == 1:
                log.exception("BLE advertisement handling failed; further failures are only counted")

    def _on_advertisement(self, address: str, adv: AdvertisementData, now: float) -> None:
        service_data = adv.service_data
        manufacturer_data = adv.manufacturer_data
        if self._only is not None:
            service_data = {k: v for k, v in service_data.items() if k in self._only[0]}
            manufacturer_data = {k: v for k, v in manufacturer_data.items() if k in self._only[1]}
        if not is_relevant(service_data, manufacturer_data):
            return
        self.stats.seen()
        address = address.upper()
        if not self.adopted(address, now):
            # Not the household's: counted, nothing kept (outside a technician's discovery).
            self.strangers += 1
            if self._discovering:
                self._note_candidate(address, service_data, manufacturer_data, adv.rssi, now)
            return
        heard = self._heard.get(address)
        if heard is None:
            heard = self._heard[address] = _Heard(address=address, rssi=adv.rssi, last=now)
        heard.rssi = adv.rssi
        heard.last = now
        if not heard.online:
            heard.online = True
            if self.config.availability_events:
                self._queue_event(
                    Event(device_id=device_id(self.name, address), kind=EventKind.AVAILABILITY, state="online", ts=now)
                )
        fingerprint = (tuple(service_data.items()), tuple(manufacturer_data.items()))
        previous = self._last_payload.get(address)
        if previous is not None and previous[0] == fingerprint and now - previous[1] < self.config.dedupe_window_s:
            self.stats.duplicates += 1
            return
        self._last_payload[address] = (fingerprint, now)
        bindkey = self._bindkey(address, now)
        for result in decode_advertisement(
            address, service_data, manufacturer_data, bindkey=bindkey, state=self._replay, ts=now
        ):
            if isinstance(result, Decoded):
                self._accept(heard, result, now)
            elif result.reason is Reason.DUPLICATE:
                self.stats.duplicates += 1
            elif result.reason not in BENIGN:
                self.stats.bad_payload(address, f"{result.fmt}: {result.reason}")

    def _accept(self, heard: _Heard, result: Decoded, now: float) -> None:
        if result.note is not None:
            self.partial += 1
            self.stats.bad_payload(heard.address, f"{result.fmt}: partly decoded, {result.note}")
        # Once a smoke detector, always one: its battery-only packets must not demote it to a plain sensor.
        kind = DeviceKind.SMOKE_DETECTOR if heard.kind is DeviceKind.SMOKE_DETECTOR else result.kind
        changed = (heard.model, heard.kind, heard.fmt) != (result.model, kind, result.fmt)
        heard.model, heard.kind, heard.fmt, heard.sleepy = result.model, kind, result.fmt, result.sleepy
        heard.decoded = True
        if changed or now - heard.announced >= self.config.dedupe_window_s:
            heard.announced = now
            self._pending_devices[heard.address] = DeviceInfo(
                device_id=result.device_id,
                driver=self.name,
                kind=kind,
                model=result.model,
                address=heard.address,
            )
        for event in result.events:
            self._pending_events.append(event)
        room = self.config.max_pending_readings - len(self._pending_readings)
        for reading in result.readings:
            if room <= 0:
                self._pending_readings.popleft()
                self.dropped_readings += 1
            else:
                room -= 1
            self._pending_readings.append(reading)
        self._wake.set()

    def _queue_event(self, event: Event) -> None:
        self._pending_events.append(event)
        self._wake.set()

    def _bindkey(self, address: str, now: float) -> bytes | None:
        cached = self._keys.get(address)
        if cached is not None and now - cached[1] < self.config.bindkey_refresh_s:
            return cached[0]
        raw = self.credentials.get(f"ble.bindkey.{address.replace(':', '').lower()}")
        key: bytes | None = None
        if raw is not None:
            try:
                key = bytes.fromhex(raw.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                key = None
            if key is None or len(key) != 16:
                key = None
                if address not in self._told_bad_keys:
                    self._told_bad_keys.add(address)
                    self.bad_bindkeys += 1
                    log.warning("a BLE bind key is not 32 hex digits; that device's encrypted data is ignored")
        self._keys[address] = (key, now)
        return key

    # -- liveness -------------------------------------------------------------------------------------------------

    def offline_events(self, now: float) -> list[Event]:
        """Availability events for devices silent longer than their kind allows; marks them offline."""
        limits = self.config.offline_after
        events = []
        for heard in self._heard.values():
            if not heard.decoded or not heard.online:
                continue
            if heard.sleepy:
                limit = limits.sleepy
            elif heard.kind is DeviceKind.SMOKE_DETECTOR:
                limit = limits.smoke_detector
            else:
                limit = limits.sensor
            if now - heard.last > limit:
                heard.online = False
                events.append(
                    Event(
                        device_id=device_id(self.name, heard.address),
                        kind=EventKind.AVAILABILITY,
                        state="offline",
                        ts=now,
                    )
                )
        return events

    async def _watch_offline(self) -> None:
        limits = self.config.offline_after
        period = max(1.0, min(limits.sensor, limits.smoke_detector, limits.sleepy) / 10)
        while True:
            await asyncio.sleep(period)
            events = self.offline_events(self._clock())
            if self.config.availability_events:
                for event in events:
                    self._queue_event(event)

    # -- delivery -------------------------------------------------------------------------------------------------

    async def flush(self, hub: HubPort) -> None:
        """Hands everything queued to the hub; an item leaves the queue only once the hub took it."""
        async with self._flush_lock:
            await self._flush(hub)

    async def _flush(self, hub: HubPort) -> None:
        while self._pending_devices or self._pending_events or self._pending_readings:
            while self._pending_devices:
                address, info = next(iter(self._pending_devices.items()))
                await hub.device_seen(info)
                if self._pending_devices.get(address) is info:
                    del self._pending_devices[address]
            while self._pending_events:
                await hub.event(self._pending_events[0])
                self._pending_events.popleft()
            if self._pending_readings:
                batch = list(self._pending_readings)
                self._pending_readings.clear()
                try:
                    await hub.readings(batch)
                except BaseException:
                    self._pending_readings.extendleft(reversed(batch))
                    raise
            self._persist_counters()

    def _persist_counters(self) -> None:
        """Saves the replay counters that moved, in the commit of the readings just handed over (same tick)."""
        dirty, self._replay.dirty = self._replay.dirty, {}
        for (fmt, address), counter in dirty.items():
            self.memory.save(
                REPLAY_NS,
                f"{fmt}|{address}",
                counter.to_bytes(8, "big"),
                device_id=device_id(self.name, address),
                with_readings=True,
            )

    async def _deliver(self, hub: HubPort) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush(hub)

    # -- scanning -------------------------------------------------------------------------------------------------

    async def run(self, hub: HubPort) -> None:
        await self.serve(hub, scan=True)

    async def serve(self, hub: HubPort, *, scan: bool) -> None:
        """Delivers to ``hub`` until cancelled; scans the radio when ``scan`` (replay feeds the callback instead)."""
        await self._load()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._deliver(hub), name="ble-deliver")
            tg.create_task(self._watch_offline(), name="ble-offline")
            if scan:
                tg.create_task(self._scan_forever(), name="ble-scan")

    def _scanner(self) -> BleakScanner:
        bluez: BlueZScannerArgs = {"adapter": self.config.adapter}
        if self.config.scanning_mode == "passive":
            bluez["or_patterns"] = list(or_patterns(self.config.formats))
        return BleakScanner(
            self.on_advertisement, scanning_mode=self.config.scanning_mode, bluez=bluez, backend=self._backend
        )

    async def _scan_forever(self) -> None:
        delay = self.config.adapter_retry_s
        while True:
            self._adapter_attempts += 1
            try:
                async with self._scanner():
                    self._set_adapter("ok", None)
                    delay = self.config.adapter_retry_s
                    log.info("BLE scanning (%s) on %s", self.config.scanning_mode, self.config.adapter)
                    await self._until_silent()
                # BlueZ can stop delivering without an error (bluetoothd restarted, adapter reset): start afresh.
                self.scanner_restarts += 1
                log.info("BLE scanner heard nothing for %.0f s; restarting it", self.config.rescan_after_silence_s)
                continue
            except Exception as exc:  # anything that stops the scanner starting is "adapter missing", with why
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopping the scanner failed while we were being cancelled: stay cancelled, don't retry.
                    raise asyncio.CancelledError from exc
                reason = _explain(exc, self.config.scanning_mode)
                self._next_retry = time.monotonic() + delay
                self._set_adapter("missing", reason)
                level = logging.WARNING if reason not in self._told_reasons else logging.DEBUG
                self._told_reasons.add(reason)
                log.log(level, "BLE adapter unavailable: %s; retrying in %.0f s", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.adapter_retry_max_s)

    async def _until_silent(self) -> None:
        """Returns once the scanner has delivered nothing at all for ``rescan_after_silence_s``."""
        while True:
            self._activity.clear()
            try:
                await asyncio.wait_for(self._activity.wait(), self.config.rescan_after_silence_s)
            except TimeoutError:
                return

    def _set_adapter(self, state: str, reason: str | None) -> None:
        self._adapter_state = state
        self._adapter_reason = reason
        if state == "ok":
            self._next_retry = None
        self._state_changed.set()

    async def wait_adapter_state(self, state: str, *, attempts: int = 1) -> None:
        """Returns once the adapter state is ``state`` after at least ``attempts`` tries (status tooling, tests)."""
        while self._adapter_state != state or self._adapter_attempts < attempts:
            self._state_changed.clear()
            await self._state_changed.wait()

    # -- discovery and health -------------------------------------------------------------------------------------

    async def discover(self, timeout: float) -> list[Discovered]:
        """Listens for ``timeout`` s (with its own short scan if the driver is not scanning) and lists every device
        heard that is not offline, with its last RSSI: the adopted ones and, for the technician to adopt, the
        strangers heard during the listening (at most :data:`MAX_CANDIDATES`, forgotten afterwards)."""
        self._discovering += 1
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + timeout
            if self._adapter_state != "ok":
                with contextlib.suppress(Exception):  # no adapter: still listen (replay feeds the callback)
                    async with self._scanner():
                        await asyncio.sleep(timeout)
            await asyncio.sleep(max(0.0, until - loop.time()))
        finally:
            self._discovering -= 1
        candidates = list(self._candidates.values())
        if not self._discovering:
            self._candidates.clear()
        return candidates + [
            Discovered(
                device_id=device_id(self.name, h.address),
                driver=self.name,
                kind=h.kind,
                model=h.model,
                address=h.address,
                rssi=h.rssi,
            )
            for h in self._heard.values()
            if h.online
        ]

    def link(self) -> Link:
        # Without an adapter the hub still runs its other drivers: a warning, not a failure.
        up = self._adapter_state == "ok"
        return Link(check="bluetooth", messages="ble", up=up, reason=self._adapter_reason or "-", essential=False)

    def health(self) -> BleHealth:
        retry_in = None if self._next_retry is None else max(0.0, self._next_retry - time.monotonic())
        return BleHealth(
            link=self.link(),
            counters=self.stats.counters(),
            adapter=self._adapter_state,
            adapter_reason=self._adapter_reason,
            adapter_attempts=self._adapter_attempts,
            adapter_retry_in_s=retry_in,
            scanner_restarts=self.scanner_restarts,
            scanning_mode=self.config.scanning_mode,
            devices=sum(1 for h in self._heard.values() if h.decoded),
            adopted=len(self._adopted),
            strangers=self.strangers,
            online=sum(1 for h in self._heard.values() if h.decoded and h.online),
            pending=len(self._pending_events) + len(self._pending_readings),
            dropped_readings=self.dropped_readings,
            partial=self.partial,
            bad_bindkeys=self.bad_bindkeys,
            internal_errors=self.internal_errors,
        )


def _explain(exc: BaseException, mode: str) -> str:
    """A short, operator-facing reason with advice; no addresses."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return "no D-Bus system bus (is BlueZ / bluetoothd installed and running?)"
    if "ServiceUnknown" in text or "org.bluez was not provided" in text:
        return "bluetoothd is not running"
    if "No Bluetooth adapters" in text or "UnknownObject" in text:
        return f"no Bluetooth adapter ({text})"
    if mode == "passive" and ("AdvertisementMonitor" in text or "NotSupported" in text or "passive" in text):
        return f"passive scanning unsupported ({text}); run bluetoothd --experimental or set scanning_mode = 'active'"
    return f"{type(exc).__name__}: {text}"
