"""The miio driver: polls configured Xiaomi miIO devices and lumi gateways through python-miio, in worker threads.

One task per configured device, all in one TaskGroup that lives as long as :meth:`MiioDriver.run`. A device that
does not answer is shown in :meth:`MiioDriver.health` and retried with the hub's one backoff policy
(:mod:`gateway.backoff`); a failing device never stops the others or the driver. Smoke detectors become
:class:`Event` s on every state change, sent before the poll's readings so an alarm never waits behind them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ClassVar

import msgspec

from drivers.base import Credentials, Discovered, Driver, DriverContext, DriverHealth, HubPort
from drivers.miio import discovery
from drivers.miio.config import DeviceConfig, MiioConfig
from drivers.miio.poller import DevicePoller, DeviceUnreachable, PollResult
from gateway.backoff import Backoff
from gateway.model import DeviceKind, Event, EventKind, SmokeState, device_id

log = logging.getLogger(__name__)

DRIVER = "miio"


def token_name(host: str) -> str:
    """The credential that holds the hex token of the device at ``host``."""
    return f"miio.token.{host}"


class LinkHealth(msgspec.Struct, kw_only=True):
    """What the driver knows about one configured device; shown (without its address) in ``kotihub status``. The
    driver's device loop updates it in place; :meth:`MiioDriver.health` reports copies."""

    index: int
    kind: str
    state: str = "starting"
    """starting | ok | unreachable | no_token | error"""
    device_id: str = ""
    failures: int = 0
    """Consecutive failed polls."""
    last_ok: float | None = None
    last_error: str = ""
    retry_at: float | None = None
    """When the next attempt is due (UTC seconds), while the device is not ok."""


class MiioHealth(DriverHealth, frozen=True, kw_only=True):
    """The miio driver's health: each configured device's link, and how many of them are failing."""

    devices: list[LinkHealth]
    failing: int


class MiioDriver(Driver):
    name: ClassVar[str] = DRIVER
    Config: ClassVar[type[MiioConfig]] = MiioConfig

    config: MiioConfig

    def __init__(self, config: MiioConfig, credentials: Credentials, context: DriverContext | None = None) -> None:
        super().__init__(config, credentials, context)
        self.links = [LinkHealth(index=i, kind=d.kind) for i, d in enumerate(config.devices)]
        self._smoke: dict[str, SmokeState] = {}
        self._registered: set[str] = set()
        self._changed = asyncio.Condition()

    def progress_deadline(self) -> float | None:
        """Every device loop beats once a round: silent for twice the slowest round's worst case (its poll interval
        or longest backoff, plus every retry timing out), the driver is hung."""
        if not self.config.devices:
            return None
        longest_wait = max(max(d.poll_interval for d in self.config.devices), self.config.backoff_max)
        return 2 * (longest_wait + self.config.timeout * (self.config.retries + 1)) + 60

    async def run(self, hub: HubPort) -> None:
        async with asyncio.TaskGroup() as tg:
            for i, dev in enumerate(self.config.devices):
                tg.create_task(self._device_loop(self.links[i], dev, hub), name=f"miio-device-{i}")
            # With no devices there is nothing to poll, but a driver lives until it is cancelled.
            tg.create_task(asyncio.Event().wait(), name="miio-idle")

    async def discover(self, timeout: float) -> list[Discovered]:
        """Sends the miIO hello to the configured target (broadcast on a real hub) and lists who answered."""
        if not self.config.discovery:
            return []
        replies = await discovery.discover(self.config.discovery_target, self.config.discovery_port, timeout)
        known = {link.device_id: self.config.devices[link.index] for link in self.links if link.device_id}
        out = []
        for reply in replies:
            did = device_id(DRIVER, str(reply.device_id))
            cfg = known.get(did)
            kind = DeviceKind.GATEWAY if cfg is not None and cfg.kind == "gateway" else DeviceKind.OTHER
            out.append(Discovered(device_id=did, driver=DRIVER, kind=kind, address=f"{reply.host}:{reply.port}"))
        log.info("miio discovery: %d device(s) answered", len(out))
        return out

    def health(self) -> MiioHealth:
        return MiioHealth(
            link=self.link(),
            counters=self.stats.counters(),
            devices=[msgspec.structs.replace(link) for link in self.links],
            failing=sum(1 for link in self.links if link.state not in ("ok", "starting")),
        )

    async def wait_health(self, predicate: Callable[[MiioHealth], bool], timeout: float) -> None:
        """Waits until ``predicate(self.health())`` holds (for tests and the demo); ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: bool(predicate(self.health())))

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _token(self, host: str) -> str | None:
        raw = self.credentials.get(token_name(host))
        if raw is None:
            return None
        try:
            text = raw.decode("ascii").strip()
            if len(bytes.fromhex(text)) == 16:
                return text
        except (UnicodeDecodeError, ValueError):
            pass
        return None

    async def _device_loop(self, link: LinkHealth, cfg: DeviceConfig, hub: HubPort) -> None:
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        poller: DevicePoller | None = None
        used_token: str | None = None
        while True:
            # One beat per round (a poll, answered or not, and its wait): a loop stuck anywhere in it goes silent.
            self.progress.beat()
            if poller is None or link.failures:
                # Credentials can be added or corrected while the hub runs: look again after every failure.
                token = self._token(cfg.host)
                if token is None:
                    await self._fail(link, "no_token", "no valid token in credentials", None, hub)
                    await self._wait(link, backoff.next())
                    continue
                if poller is None or token != used_token:
                    poller = DevicePoller(cfg, token, timeout=self.config.timeout, retries=self.config.retries)
                    used_token = token
            try:
                result = await asyncio.to_thread(poller.poll)
            except DeviceUnreachable as exc:
                await self._fail(link, "unreachable", str(exc), link.device_id or None, hub)
                await self._wait(link, backoff.next())
                continue
            except Exception as exc:  # python-miio can raise anything on odd replies; never let it end the driver
                log.warning("miio device %d: unexpected %s while polling", link.index, type(exc).__name__)
                log.debug("miio poll failure", exc_info=True)
                await self._fail(link, "error", type(exc).__name__, link.device_id or None, hub)
                await self._wait(link, backoff.next())
                continue
            backoff.reset()
            await self._publish(link, result, hub)
            await self._wait(link, cfg.poll_interval)

    async def _wait(self, link: LinkHealth, seconds: float) -> None:
        link.retry_at = time.time() + seconds if link.state != "ok" else None
        await asyncio.sleep(seconds)

    async def _fail(self, link: LinkHealth, state: str, reason: str, known_id: str | None, hub: HubPort) -> None:
        was_ok = link.state == "ok"
        link.state = state
        link.failures += 1
        link.last_error = reason
        if link.failures == 1 or was_ok:
            log.warning("miio device %d (%s) is %s: %s", link.index, link.kind, state, reason)
        if was_ok and known_id:
            await hub.event(Event(device_id=known_id, kind=EventKind.AVAILABILITY, state="offline", ts=time.time()))
        await self._changed_now()

    async def _publish(self, link: LinkHealth, result: PollResult, hub: HubPort) -> None:
        recovered = link.state in ("unreachable", "error") and link.device_id == result.device_id
        if link.state != "ok" and link.failures:
            log.info("miio device %d (%s) answers again", link.index, link.kind)
        link.state = "ok"
        link.failures = 0
        link.last_error = ""
        link.retry_at = None
        link.last_ok = time.time()
        link.device_id = result.device_id
        self.stats.seen()
        for hint, reason in result.bad:
            self.stats.bad_payload(hint, reason)
        # A device is registered before its first event; then alarms go first, ahead of refreshes and readings.
        fresh = [info for info in result.devices if info.device_id not in self._registered]
        for info in fresh:
            await hub.device_seen(info)
            self._registered.add(info.device_id)
        for report in result.smoke:
            if self._smoke.get(report.device_id) is report.state:
                continue
            attrs: dict[str, str | float | int | bool] = {"source": "miio-poll"}
            if report.density is not None:
                attrs["density"] = report.density
            event = Event(
                device_id=report.device_id, kind=EventKind.SMOKE, state=report.state.value, ts=time.time(), attrs=attrs
            )
            await hub.event(event)
            # Remembered only once the hub accepted it: if it raised, the next poll (or run) sends it again.
            self._smoke[report.device_id] = report.state
        if recovered:
            await hub.event(
                Event(device_id=result.device_id, kind=EventKind.AVAILABILITY, state="online", ts=time.time())
            )
        for info in result.devices:
            if info not in fresh:
                await hub.device_seen(info)
        if result.readings:
            await hub.readings(result.readings)
        await self._changed_now()
