"""Blocking polls of one miIO device through python-miio 0.5.12; run in a worker thread by the driver.

python-miio's handshake (``MiIOProtocol.discover``) always sends its hello to port 54321, which neither a test on
loopback nor a device behind a port forward can rely on. :class:`_Protocol` overrides only the handshake, using our
own hello on the configured port; every request still goes through the library's ``send``.

python-miio 0.5.12 lists a ``lumi.sensor_smoke`` but cannot read it (no properties in its subdevices.yaml), so the
smoke detector is asked with a raw ``get_device_prop_exp`` through ``Gateway.send``, without forking the library.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

from drivers.miio import values
from drivers.miio.config import DeviceConfig
from drivers.miio.discovery import hello
from gateway.errors import TransientError
from gateway.model import DeviceInfo, DeviceKind, Quantity, Reading, SmokeState, device_id

with warnings.catch_warnings():
    # miio 0.5.12 subclasses click.MultiCommand, deprecated since Click 8.2 (we pin click<9, where it still exists).
    warnings.simplefilter("ignore", DeprecationWarning)
    from miio.device import Device
    from miio.exceptions import DeviceException
    from miio.gateway.gateway import Gateway
    from miio.miioprotocol import MiIOProtocol

log = logging.getLogger(__name__)

DRIVER = "miio"
SMOKE_MODEL = "lumi.sensor_smoke"
REDISCOVER_EVERY = 10
"""Polls between refreshes of a gateway's sub-device list (also refreshed after every failure)."""

# python-miio logs device names, sids and addresses at INFO: keep it at WARNING unless someone configured it. Its
# protocol module logs every unanswered request at ERROR; the driver reports that once per outage and in health().
for _name, _level in (("miio", logging.WARNING), ("miio.miioprotocol", logging.CRITICAL)):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(_level)


class DeviceUnreachable(TransientError):
    """The device did not answer (or answered with something unusable); the driver retries with backoff."""


class _Protocol(MiIOProtocol):
    """python-miio's protocol with a handshake that honours the configured port."""

    def __init__(self, ip: str, token_hex: str, *, port: int, timeout: float) -> None:
        super().__init__(ip, token_hex, 0, 0, True, timeout)  # type: ignore[arg-type]  # float timeouts work
        self.port = port

    def send_handshake(self, *, retry_count: int = 3) -> Any:
        try:
            reply = hello(str(self.ip), self.port, float(self._timeout), attempts=1 + min(retry_count, 1))
        except OSError as exc:  # unroutable, unresolvable: as good as silent
            raise _NoHello("hello could not be sent") from exc
        if reply is None:
            raise _NoHello("no answer to the hello")
        self._device_id = reply.device_id.to_bytes(4, "big")
        # python-miio keeps the stamp as a naive UTC datetime and sends it back + 1 s.
        self._device_ts = datetime.datetime.fromtimestamp(reply.stamp, datetime.UTC).replace(tzinfo=None)
        self._discovered = True
        return reply


@dataclass
class SmokeReport:
    device_id: str
    state: SmokeState
    density: float | None


@dataclass
class PollResult:
    """Everything one poll learnt; ``bad`` lists (device hint, reason) for payloads to count, not to raise."""

    device_id: str
    devices: list[DeviceInfo] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    smoke: list[SmokeReport] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)


class _NoHello(DeviceException):
    """The device did not answer the handshake."""


def _silent(exc: BaseException) -> bool:
    """Whether a python-miio exception means the device did not answer (a socket timeout or error somewhere in its
    chain, or no hello), as opposed to an answer we could not use (an error reply, an odd shape, bad JSON)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | _NoHello):
            return True
        seen = seen.__cause__
    return False


class DevicePoller:
    """Polls one configured device. Not thread-safe: one poll at a time, from one worker thread."""

    def __init__(self, cfg: DeviceConfig, token_hex: str, *, timeout: float, retries: int) -> None:
        self.cfg = cfg
        cls = Gateway if cfg.kind == "gateway" else Device
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dev: Any = cls(cfg.host, token_hex)
        dev._protocol = _Protocol(cfg.host, token_hex, port=cfg.port, timeout=timeout)
        dev.retry_count = retries
        self._dev = dev
        self._polls = 0
        self._subdevices: dict[str, Any] | None = None

    def poll(self) -> PollResult:
        """One round trip set; raises :class:`DeviceUnreachable` if the device (or gateway) did not answer."""
        try:
            return self._poll()
        except DeviceException as exc:
            self._subdevices = None
            if _silent(exc):
                raise DeviceUnreachable("no answer") from exc
            raise DeviceUnreachable(f"unusable answer ({type(exc).__name__})") from exc

    def _poll(self) -> PollResult:
        dev = self._dev
        info = dev.info()
        did = int(dev.device_id)
        model = str(info.model or "")
        own_id = device_id(DRIVER, str(did))
        kind = DeviceKind.GATEWAY if self.cfg.kind == "gateway" else DeviceKind.OTHER
        result = PollResult(device_id=own_id)
        result.devices.append(
            DeviceInfo(
                device_id=own_id,
                driver=DRIVER,
                kind=kind,
                manufacturer="Xiaomi",
                model=model,
                address=self.cfg.host,
            )
        )
        if self.cfg.kind == "gateway":
            self._poll_gateway(own_id, result)
        self._polls += 1
        return result

    def _poll_gateway(self, gw_id: str, result: PollResult) -> None:
        gw = self._dev
        ok, lux = self._call(gw_id, result, gw.get_illumination)
        if ok:
            self._add(result, gw_id, Quantity.ILLUMINANCE, lux)
        if self._subdevices is None or self._polls % REDISCOVER_EVERY == 0:
            self._subdevices = dict(gw.discover_devices())
        for sid, sub in self._subdevices.items():
            self._poll_subdevice(gw_id, str(sid), sub, result)

    def _poll_subdevice(self, gw_id: str, sid: str, sub: Any, result: PollResult) -> None:
        sub_id = device_id(DRIVER, sid)
        zigbee_model = str(sub.zigbee_model)
        is_smoke = zigbee_model == SMOKE_MODEL
        is_sensor = bool(sub.get_prop_exp_dict)
        kind = DeviceKind.SMOKE_DETECTOR if is_smoke else DeviceKind.SENSOR if is_sensor else DeviceKind.OTHER
        result.devices.append(
            DeviceInfo(device_id=sub_id, driver=DRIVER, kind=kind, manufacturer="Xiaomi", model=zigbee_model, via=gw_id)
        )
        if is_smoke:
            ok, raw = self._call(
                sub_id, result, self._dev.send, "get_device_prop_exp", [[sid, *values.SMOKE_PROPERTIES]]
            )
            smoke, reason = values.smoke_reply(raw) if ok else (None, "")
            if smoke is not None:
                result.smoke.append(SmokeReport(device_id=sub_id, state=smoke[0], density=smoke[1]))
            elif ok:
                result.bad.append((sub_id, reason))
        elif is_sensor:
            # update() refreshes sub.status in place; after a failed one it still holds the previous values.
            ok, _ = self._call(sub_id, result, sub.update)
            if ok:
                readings, reasons = values.ht_readings(sub_id, dict(sub.status), _now())
                result.readings.extend(readings)
                result.bad.extend((sub_id, r) for r in reasons)
        ok, battery = self._call(sub_id, result, sub.get_battery)
        if ok and battery is not None:
            self._add(result, sub_id, Quantity.BATTERY, battery)

    @staticmethod
    def _add(result: PollResult, dev_id: str, quantity: Quantity, value: Any) -> None:
        reading, reason = values.reading(dev_id, quantity, value, _now())
        if reading is not None:
            result.readings.append(reading)
        else:
            result.bad.append((dev_id, reason))

    @staticmethod
    def _call(dev_id: str, result: PollResult, fn: Any, *args: Any) -> tuple[bool, Any]:
        """Calls python-miio: ``(True, value)``; an unusable answer about one value is a bad payload ``(False, None)``
        so the rest of the poll goes on; silence is raised, since the whole device is then unreachable."""
        try:
            return True, fn(*args)
        except DeviceException as exc:
            if _silent(exc):
                raise
            result.bad.append((dev_id, f"unusable answer ({type(exc).__name__})"))
            return False, None


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()
