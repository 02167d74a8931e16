"""``kotihub run``: the daemon. One TaskGroup with named tasks; SIGTERM/SIGINT stop it cleanly, flushing the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from cloud_sync import protocol as p
from cloud_sync.uplink import CommandHandler, HubIdentity, Uplink
from drivers import driver_class
from drivers.base import Driver
from gateway import config as configuration
from gateway import crypto, sdnotify
from gateway.config import Config
from gateway.control import ControlError, ControlServer, Handler
from gateway.hub import Hub
from gateway.model import Category
from gateway.secrets import CredentialStore
from gateway.store import Store

log = logging.getLogger(__name__)

WATCHDOG_STALL_S = 30.0


class Daemon:
    """Everything the hub runs, wired together. Use :meth:`run` (until ``stop`` is set)."""

    def __init__(self, config: Config, *, stop: asyncio.Event | None = None) -> None:
        self.config = config
        self.stop = stop or asyncio.Event()
        self.ready = asyncio.Event()
        self.store: Store | None = None
        self.hub: Hub | None = None
        self.drivers: list[Driver] = []
        self.extra_tasks: list[tuple[str, Callable[[Daemon], Coroutine[Any, Any, None]]]] = []
        self.status_extras: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.extra_handlers: dict[str, Handler] = {}
        self.command_handlers: dict[str, CommandHandler] = {}
        self.uplink: Uplink | None = None

    def _open_store(self) -> Store:
        cfg = self.config
        key = crypto.load_master_key(cfg.state_path)
        return Store.open(
            cfg.state_path,
            key,
            crypto.choose_algorithm(cfg.crypto.cipher),
            commit_interval=cfg.store.commit_interval,
            commit_max_items=cfg.store.commit_max_items,
            max_pending_readings=cfg.store.max_pending_readings,
            journal_size_limit=cfg.store.journal_size_limit,
            min_free_bytes=cfg.store.min_free_bytes,
        )

    def _make_drivers(self) -> list[Driver]:
        credentials = CredentialStore(self.config.state_path)
        return [
            driver_class(name)(driver_config, credentials)
            for name, driver_config in configuration.driver_configs(self.config).items()
        ]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop.set)
        store = self._open_store()
        async with store:
            self.store = store
            hub = Hub(store, offline_after=dict(self.config.devices.offline_after))
            self.hub = hub
            await hub.load()
            self.drivers = self._make_drivers()
            control = ControlServer(self.config.socket_path, self._handlers(), group=self.config.control.group)
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(control.serve(), name="control"),
                        tg.create_task(hub.watch_devices(), name="devices"),
                        tg.create_task(self._watchdog(), name="watchdog"),
                    ]
                    for driver in self.drivers:
                        tasks.append(tg.create_task(hub.supervise(driver), name=f"driver:{driver.name}"))
                    uplink = self._make_uplink()
                    if uplink is not None:
                        tasks.append(tg.create_task(uplink.run(), name="uplink"))
                    for name, factory in self.extra_tasks:
                        tasks.append(tg.create_task(factory(self), name=name))
                    await control.listening.wait()
                    self.ready.set()
                    sdnotify.notify("READY=1\nSTATUS=" + self.status_line())
                    log.info("kotihub is running with %d driver(s)", len(self.drivers))
                    await self.stop.wait()
                    sdnotify.notify("STOPPING=1")
                    log.info("stopping")
                    for task in tasks:
                        task.cancel()
            finally:
                await hub.flush_last_seen()
        log.info("stopped; the store is flushed and closed")

    def _make_uplink(self) -> Uplink | None:
        if not self.config.uplink.enabled:
            return None
        identity = HubIdentity(self.config.state_path)
        if not identity.provisioned:
            log.error("the uplink is enabled but this hub is not provisioned: run `kotihub provision`")
            return None
        assert self.store is not None and self.hub is not None
        hub = self.hub

        async def restrict(command: p.Command) -> dict[str, Any]:
            category = Category(str(command.args["category"]))
            await hub.set_restricted(category, bool(command.args.get("on", True)), actor="register")
            return {"restricted": sorted(c.value for c in hub.restricted)}

        self.uplink = Uplink(
            self.store,
            self.config.uplink,
            identity,
            command_handlers={"restrict": restrict, **self.command_handlers},
            spool_dir=self.config.state_path / "spool",
        )
        self.status_extras["uplink"] = self._uplink_status
        return self.uplink

    async def _uplink_status(self) -> dict[str, Any]:
        return self.uplink.summary() if self.uplink is not None else {}

    async def _sync(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.uplink is None:
            raise ControlError("the uplink is not running (not enabled in the config, or the hub is not provisioned)")
        if args.get("now"):
            self.uplink.kick()
        assert self.store is not None
        return {**self.uplink.summary(), "depth": await self.store.depth()}

    def status_line(self) -> str:
        assert self.hub is not None
        s = self.hub.summary()
        return (
            f"{s['devices']['online']}/{s['devices']['known']} devices online, "
            f"{s['counters']['readings_accepted']} readings stored, {s['counters']['alarms']} alarms"
        )

    async def _watchdog(self) -> None:
        """Pings systemd's watchdog from the main loop, and only while the store writer is alive and committing."""
        interval = sdnotify.watchdog_interval() or 10.0
        while True:
            await asyncio.sleep(interval)
            assert self.store is not None
            health = self.store.health()
            if self.store.healthy and health["writer_heartbeat_age"] < WATCHDOG_STALL_S:
                sdnotify.notify("WATCHDOG=1\nSTATUS=" + self.status_line())
            else:
                log.error("store writer unhealthy (%s); withholding the watchdog ping", health["last_error"])

    # ---- control commands ----------------------------------------------------------------------------------------

    def _handlers(self) -> dict[str, Handler]:
        return {
            "status": self._status,
            "devices": self._devices,
            "discover": self._discover,
            "restrict": self._restrict,
            "rename": self._rename,
            "sync": self._sync,
            **self.extra_handlers,
        }

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None and self.hub is not None
        store = self.store
        summary = self.hub.summary()
        summary["store"] = {
            "depth": await store.depth(),
            "dead_letters": len(await store.dead_letters()),
            **store.health(),
            **store.disk_usage(),
        }
        summary["retention"] = {
            "days": self.config.retention.days,
            "horizon": time.time() - self.config.retention.days * 86_400,
        }
        summary["hub"] = {"name": self.config.hub.name}
        for name, fn in self.status_extras.items():
            summary[name] = await fn()
        return summary

    async def _devices(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.hub is not None
        return [
            {
                "device_id": state.info.device_id,
                "driver": state.info.driver,
                "kind": state.info.kind.value,
                "name": state.info.name,
                "room": state.info.room,
                "model": state.info.model,
                "online": state.online,
                "battery": state.battery,
                "first_seen": state.first_seen,
                "last_seen": state.last_seen,
            }
            for state in sorted(self.hub.devices.values(), key=lambda s: s.info.device_id)
        ]

    async def _discover(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.hub is not None
        timeout = float(args.get("timeout", 5.0))
        if not 0 < timeout <= 120:
            raise ControlError("timeout must be between 0 and 120 seconds")
        results = await asyncio.gather(*(d.discover(timeout) for d in self.drivers), return_exceptions=True)
        found: list[dict[str, Any]] = []
        for driver, result in zip(self.drivers, results, strict=True):
            if isinstance(result, BaseException):
                found.append({"driver": driver.name, "error": str(result)})
                continue
            for item in result:
                found.append(
                    {
                        "device_id": item.device_id,
                        "driver": item.driver,
                        "kind": item.kind.value,
                        "model": item.model,
                        "address": item.address,
                        "rssi": item.rssi,
                        "known": item.device_id in self.hub.devices,
                    }
                )
        return found

    async def _restrict(self, args: dict[str, Any]) -> list[str]:
        assert self.hub is not None
        try:
            category = Category(args["category"])
        except (KeyError, ValueError):
            raise ControlError(f"category must be one of {', '.join(c.value for c in Category)}") from None
        await self.hub.set_restricted(category, bool(args.get("on", True)), actor=str(args.get("actor", "household")))
        return sorted(c.value for c in self.hub.restricted)

    async def _rename(self, args: dict[str, Any]) -> dict[str, str]:
        assert self.hub is not None
        device_id = str(args.get("device_id", ""))
        if device_id not in self.hub.devices:
            raise ControlError(f"no such device: {device_id}")
        name, room = args.get("name"), args.get("room")
        for value in (name, room):
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                raise ControlError("names and rooms are text of at most 64 characters")
        await self.hub.rename(device_id, name=name, room=room, actor=str(args.get("actor", "household")))
        info = self.hub.devices[device_id].info
        return {"device_id": device_id, "name": info.name, "room": info.room}
