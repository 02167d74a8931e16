"""``kotihub run``: the daemon. One TaskGroup; every long-lived task in it runs under the one :class:`Supervisor`
policy, so a failing part restarts alone. SIGTERM/SIGINT stop it cleanly, flushing the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import driver_class
from drivers.base import Driver, DriverContext, ForgetsErased, RecordsClips
from gateway import config as configuration
from gateway import crypto, diag, register_commands, sdnotify, sirens
from gateway.config import Config
from gateway.control import ControlServer
from gateway.control_handlers import ControlHandlers
from gateway.hub import Hub
from gateway.jobs import Jobs
from gateway.members import HubMembers
from gateway.privacy import JOB_KEY, Eraser, ErasureJob
from gateway.retention import Retention
from gateway.secrets import CredentialStore
from gateway.storage_watch import watch_storage
from gateway.store import Store, clipspool
from gateway.store.clipspool import ClipSpool
from gateway.store.driver_state import StoreMemory
from gateway.supervisor import Supervisor

if TYPE_CHECKING:
    # The uplink (requests, tenacity, x509) is imported only when it is enabled: a hub without it saves the memory.
    from cloud_sync.uplink import Uplink

log = logging.getLogger(__name__)

UPLINK_FLUSH_S = 1.0
"""How long a stop waits for the uplink to send the readings it let linger (cloud_sync.uplink.lanes)."""


class Daemon:
    """Everything the hub runs, wired together. Use :meth:`run` (until ``stop`` is set)."""

    def __init__(self, config: Config, *, stop: asyncio.Event | None = None) -> None:
        self.config = config
        self.stop = stop or asyncio.Event()
        self.ready = asyncio.Event()
        self.store: Store | None = None
        self.hub: Hub | None = None
        self.drivers: list[Driver] = []
        self.status_extras: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.uplink: Uplink | None = None
        self.jobs = Jobs()
        self.control = ControlHandlers(self)
        self._master_key = b""
        self.recent_logs = diag.RecentLogs()
        self.retention: Retention | None = None
        self.eraser: Eraser | None = None
        self.supervisor = Supervisor(config.supervision.backoff)
        self.members = HubMembers(config.state_path)
        self.status_extras["members"] = self._members_status
        self.sirens: sirens.Sirens | None = None

    def _open_store(self) -> Store:
        cfg = self.config
        key = crypto.load_master_key(cfg.state_path)
        self._master_key = key
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

    def _make_drivers(self, context: DriverContext) -> list[Driver]:
        credentials = CredentialStore(self.config.state_path)
        return [
            driver_class(name)(driver_config, credentials, context)
            for name, driver_config in configuration.driver_configs(self.config).items()
        ]

    async def run(self) -> None:
        logging.getLogger().addHandler(self.recent_logs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop.set)
        store = self._open_store()
        async with store:
            self.store = store
            spool = self.config.state_path / "spool"
            spool.mkdir(mode=0o700, exist_ok=True)
            if any(spool.iterdir()):
                await clipspool.reconcile(store, spool)
            # Clips are sealed to the household's verified member list as it is at each clip.
            context = DriverContext(memory=StoreMemory(store), clips=ClipSpool(spool, lambda: self.members.recipients))
            self.drivers = self._make_drivers(context)
            hub = Hub(
                store,
                offline_after=dict(self.config.devices.offline_after),
                supervisor=self.supervisor,
                drivers=self.drivers,
            )
            self.hub = hub
            await hub.load()
            if not self.members.recipients and any(isinstance(d, RecordsClips) for d in self.drivers):
                log.warning("no verified household member list yet: clips cannot be recorded")
            self.sirens = sirens.attach(hub, self.drivers)
            exports = Path(self.config.hub.runtime_dir) / "exports"
            self.retention = Retention(store, days=self.config.retention.days, spool_dir=spool, exports_dir=exports)
            self.eraser = Eraser(
                store,
                self._master_key,
                spool_dir=spool,
                hub_name=self.config.hub.name,
                state_dir=self.config.state_path,
                exports_dir=exports,
                carry=self.config.uplink.enabled,
            )
            self.eraser.on_erased.append(self._forget_erased)
            control = ControlServer(self.config.socket_path, self.control.table(), group=self.config.control.group)
            retention = self.retention
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks: list[asyncio.Task[None]] = []

                    def keep(name: str, factory: Callable[[], Awaitable[None]]) -> None:
                        tasks.append(tg.create_task(self.supervisor.run(name, factory), name=name))

                    keep("control", control.serve)
                    keep("devices", hub.watch_devices)
                    keep("watchdog", self._watchdog)
                    keep("retention", lambda: retention.run_forever(self.config.retention.interval))
                    self.jobs.group = tg
                    keep("storage", lambda: watch_storage(hub, reserve=self.config.store.min_free_bytes))
                    spawned: set[asyncio.Task[None]] = set()

                    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
                        task = tg.create_task(coro, name=name)
                        spawned.add(task)
                        task.add_done_callback(spawned.discard)

                    hub.spawn = spawn
                    if await store.get_setting(JOB_KEY):
                        self.jobs.start("erase", self.eraser.resume)
                    if self.sirens is not None:
                        siren_control = self.sirens
                        keep("sirens", lambda: siren_control.run(hub))
                    for driver in self.drivers:
                        tasks.append(tg.create_task(hub.supervise(driver), name=f"driver:{driver.name}"))
                    uplink = self._make_uplink()
                    if uplink is not None:
                        # The uplink supervises each of its loops; this only restarts it if it cannot start at all.
                        keep("uplink", uplink.run)
                    await control.listening.wait()
                    self.ready.set()
                    sdnotify.notify("READY=1\nSTATUS=" + self.status_line())
                    log.info("kotihub is running with %d driver(s)", len(self.drivers))
                    await self.stop.wait()
                    sdnotify.notify("STOPPING=1")
                    log.info("stopping")
                    if self.uplink is not None:
                        # Readings lingering for company go now (bounded: a stop stays quick; what is not sent
                        # stays in the store for the next start).
                        await self.uplink.flush(UPLINK_FLUSH_S)
                    # Everything in the group ends now: recordings and jobs too, or shutdown would wait for them.
                    for task in [*tasks, *spawned, *self.jobs.tasks()]:
                        task.cancel()
            finally:
                await hub.flush_last_seen()
        log.info("stopped; the store is flushed and closed")
        logging.getLogger().removeHandler(self.recent_logs)

    def _make_uplink(self) -> Uplink | None:
        if not self.config.uplink.enabled:
            return None
        from cloud_sync.enroll import finish_renewal
        from cloud_sync.heartbeat import HealthSource
        from cloud_sync.uplink import HubIdentity, Uplink

        identity = HubIdentity(self.config.state_path)
        finish_renewal(self.config.state_path)  # a certificate renewal cut off by a crash is finished or undone
        if not identity.provisioned:
            log.error("the uplink is enabled but this hub is not provisioned: run `kotihub provision`")
            return None
        assert self.store is not None and self.hub is not None and self.eraser is not None
        hub = self.hub

        self.uplink = Uplink(
            self.store,
            self.config.uplink,
            identity,
            supervisor=self.supervisor,
            command_handlers=register_commands.table(self),
            command_touches=register_commands.TOUCHES,
            spool_dir=self.config.state_path / "spool",
            erasures=self.eraser.outbox,
            health_source=HealthSource(self.store, hub),
            devices_source=lambda: [
                {
                    "device_id": d.info.device_id,
                    "kind": d.info.kind.value,
                    "name": d.info.name[:256],
                    "model": d.info.model[:256],
                    "room": d.info.room[:256],
                }
                for d in hub.devices.values()
            ],
        )
        retention = self.retention
        if retention is not None:
            self.uplink.on_server_time = lambda t: retention.clock.confirm(t, source="the register")
        self.status_extras["uplink"] = self._uplink_status
        return self.uplink

    async def _members_status(self) -> dict[str, Any]:
        return self.members.summary()

    async def _uplink_status(self) -> dict[str, Any]:
        return self.uplink.summary() if self.uplink is not None else {}

    def _forget_erased(self, job: ErasureJob) -> None:
        if self.hub is None:
            return
        if job.scope == "all":
            self.hub.devices.clear()
            self.members.erase()
        elif job.scope == "device":
            self.hub.devices.pop(job.target, None)
        for driver in self.drivers:  # their persisted records went with the erasure; their memory goes too
            if isinstance(driver, ForgetsErased):
                driver.forget(job.scope, job.target)

    def status_line(self) -> str:
        assert self.hub is not None
        s, counters = self.hub.summary(), self.hub.counters
        return (
            f"{s['devices']['online']}/{s['devices']['known']} devices online, "
            f"{counters.readings_accepted} readings stored, {counters.alarms} alarms"
        )

    async def _watchdog(self) -> None:
        """Pings systemd's watchdog from the main loop, and only while the store writer is alive and committing."""
        interval = sdnotify.watchdog_interval() or 10.0
        while True:
            await asyncio.sleep(interval)
            assert self.store is not None
            health = self.store.health()
            if self.store.healthy and health["writer_heartbeat_age"] < self.config.supervision.writer_stall:
                sdnotify.notify("WATCHDOG=1\nSTATUS=" + self.status_line())
            else:
                log.error("store writer unhealthy (%s); withholding the watchdog ping", health["last_error"])
