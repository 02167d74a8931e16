"""``kotihub run``: the daemon. One TaskGroup with named tasks; SIGTERM/SIGINT stop it cleanly, flushing the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from drivers import driver_class
from drivers.base import Driver
from gateway import config as configuration
from gateway import crypto, diag, sdnotify, selftest
from gateway.config import Config
from gateway.control import ControlError, ControlServer, Handler
from gateway.hub import Hub
from gateway.model import Category, Clip, Lane
from gateway.privacy import JOB_KEY, Eraser, ErasureJob, ExportProgress, export_archive
from gateway.retention import Retention, RetentionReport
from gateway.secrets import CredentialStore
from gateway.store import Store

if TYPE_CHECKING:
    # The uplink (requests, tenacity, x509) is imported only when it is enabled: a hub without it saves the memory.
    from cloud_sync import protocol as p
    from cloud_sync.uplink import Uplink

log = logging.getLogger(__name__)


@dataclass
class Job:
    kind: str
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    step: str = ""
    finished: bool = False
    error: str | None = None
    result: Any = None
    progress: ExportProgress | None = None
    task: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        done, total = (self.progress.done, self.progress.total) if self.progress else (self.done, self.total)
        return {
            "id": self.job_id,
            "kind": self.kind,
            "done": done,
            "total": total,
            "step": self.step,
            "finished": self.finished,
            "error": self.error,
            "result": self.result,
        }


async def _report(coro: Awaitable[RetentionReport]) -> dict[str, Any]:
    report = await coro
    return {k: v for k, v in vars(report).items() if k != "history"}


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
        self.status_extras: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.uplink: Uplink | None = None
        self.jobs: dict[str, Job] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._master_key = b""
        self.recent_logs = diag.RecentLogs()
        self.retention: Retention | None = None
        self.eraser: Eraser | None = None

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

    def _make_drivers(self) -> list[Driver]:
        credentials = CredentialStore(self.config.state_path)
        return [
            driver_class(name)(driver_config, credentials)
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
            hub = Hub(store, offline_after=dict(self.config.devices.offline_after))
            self.hub = hub
            await hub.load()
            self.drivers = self._make_drivers()
            spool = self.config.state_path / "spool"
            spool.mkdir(mode=0o700, exist_ok=True)
            self.retention = Retention(store, days=self.config.retention.days, spool_dir=spool)
            self.eraser = Eraser(store, self._master_key, spool_dir=spool, hub_name=self.config.hub.name)
            self.eraser.on_erased.append(self._forget_erased)
            control = ControlServer(self.config.socket_path, self._handlers(), group=self.config.control.group)
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(control.serve(), name="control"),
                        tg.create_task(hub.watch_devices(), name="devices"),
                        tg.create_task(self._watchdog(), name="watchdog"),
                        tg.create_task(self.retention.run_forever(self.config.retention.interval), name="retention"),
                    ]
                    self._tg = tg
                    spawned: set[asyncio.Task[None]] = set()

                    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
                        task = tg.create_task(coro, name=name)
                        spawned.add(task)
                        task.add_done_callback(spawned.discard)

                    hub.spawn = spawn
                    self._attach_cameras(spool)
                    if await store.get_setting(JOB_KEY):
                        self._start_job("erase", self.eraser.resume)
                    for driver in self.drivers:
                        tasks.append(tg.create_task(hub.supervise(driver), name=f"driver:{driver.name}"))
                    uplink = self._make_uplink()
                    if uplink is not None:
                        tasks.append(tg.create_task(uplink.run(), name="uplink"))
                    await control.listening.wait()
                    self.ready.set()
                    sdnotify.notify("READY=1\nSTATUS=" + self.status_line())
                    log.info("kotihub is running with %d driver(s)", len(self.drivers))
                    await self.stop.wait()
                    sdnotify.notify("STOPPING=1")
                    log.info("stopping")
                    # Everything in the group ends now: recordings and jobs too, or shutdown would wait for them.
                    for task in [*tasks, *spawned, *(j.task for j in self.jobs.values() if j.task is not None)]:
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
        assert self.store is not None and self.hub is not None
        hub = self.hub

        async def restrict(command: p.Command) -> dict[str, Any]:
            category = Category(str(command.args["category"]))
            await hub.set_restricted(category, bool(command.args.get("on", True)), actor="register")
            return {"restricted": sorted(c.value for c in hub.restricted)}

        eraser = self.eraser
        assert eraser is not None

        async def erase(command: p.Command) -> dict[str, Any]:
            scope, target = str(command.args.get("scope", "all")), str(command.args.get("target", ""))
            return await eraser.request(scope, target, requested_by="register")

        async def member_keys(command: p.Command) -> dict[str, Any]:
            members = command.args.get("member_keys")
            if not isinstance(members, list):
                raise ValueError("member_keys needs a list of member keys")
            path = self.config.state_path / "members.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(members, indent=2))
            tmp.replace(path)
            for driver in self.drivers:
                setter = getattr(driver, "set_recipients", None)
                if setter is not None:
                    setter([str(m["recipient"]) for m in members])
            return {"members": len(members)}

        self.uplink = Uplink(
            self.store,
            self.config.uplink,
            identity,
            command_handlers={
                "restrict": restrict,
                "erase": erase,
                "member_keys": member_keys,
            },
            spool_dir=self.config.state_path / "spool",
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

    async def _uplink_status(self) -> dict[str, Any]:
        return self.uplink.summary() if self.uplink is not None else {}

    async def _sync(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.uplink is None:
            raise ControlError("the uplink is not running (not enabled in the config, or the hub is not provisioned)")
        if args.get("now"):
            self.uplink.kick()
        assert self.store is not None
        return {**self.uplink.summary(), "depth": await self.store.depth()}

    # ---- jobs: long operations the CLI follows with a progress bar ----------------------------------------------

    def _start_job(self, kind: str, factory: Callable[[], Awaitable[Any]], job: Job | None = None) -> Job:
        assert self._tg is not None
        job = job or Job(kind)
        self.jobs = {k: v for k, v in self.jobs.items() if not v.finished or time.time() - v.started < 3600}
        self.jobs[job.job_id] = job

        async def run() -> None:
            try:
                job.result = await factory()
            except Exception as exc:  # reported to whoever follows the job; the daemon goes on
                log.exception("%s failed", kind)
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.finished = True

        job.task = self._tg.create_task(run(), name=f"job:{kind}")
        return job

    async def _job(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(str(args.get("id", "")))
        if job is None:
            raise ControlError("no such job")
        return job.view()

    async def _retention(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.retention is not None
        retention = self.retention
        if args.get("run"):
            job = Job("retention")

            def progress(step: str, n: int) -> None:
                job.done += n
                job.step = step

            job.total = sum((await retention.due()).values())
            self._start_job(
                "retention",
                lambda: _report(retention.run_once(force_time=bool(args.get("force")), progress=progress)),
                job,
            )
            return {"job": job.job_id}
        return {**retention.summary(), "due": await retention.due()}

    async def _erase(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.eraser is not None
        eraser = self.eraser
        if args.get("confirm") is not True:
            raise ControlError("erasure needs an explicit confirmation")
        if any(j.kind == "erase" and not j.finished for j in self.jobs.values()):
            raise ControlError("an erasure is already running")
        scope, target = str(args.get("scope", "")), str(args.get("target", ""))
        if scope == "device" and self.hub is not None and target not in self.hub.devices:
            raise ControlError(f"no such device: {target}")
        if scope == "category" and target not in {c.value for c in Category}:
            raise ControlError(f"category must be one of {', '.join(c.value for c in Category)}")
        if scope not in ("all", "device", "category"):
            raise ControlError("erase --all, --device ID or --category C")
        actor = str(args.get("actor", "household"))
        job = self._start_job("erase", lambda: eraser.request(scope, target, requested_by=actor))
        return {"job": job.job_id}

    async def _export(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        store = self.store
        # The runtime directory is the kotihub group's (0750): a technician in the group can collect the file.
        exports = Path(self.config.hub.runtime_dir) / "exports"
        exports.mkdir(mode=0o750, exist_ok=True)
        out = exports / f"kotihub-export-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.zip"
        job = Job("export")
        progress = ExportProgress()
        job.progress = progress

        async def run() -> dict[str, Any]:
            await store.flush()
            await asyncio.to_thread(
                export_archive,
                store,
                out,
                hub_name=self.config.hub.name,
                spool_dir=self.config.state_path / "spool",
                progress=progress,
            )
            await store.audit(str(args.get("actor", "household")), "export", "all", {"counts": progress.counts})
            return {"path": str(out), "counts": progress.counts}

        self._start_job("export", run, job)
        return {"job": job.job_id}

    async def _selftest(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return await selftest.run_checks(self, alarm_test=bool(args.get("alarm_test")))

    async def _diag(self, args: dict[str, Any]) -> dict[str, Any]:
        return await diag.bundle(self, self.recent_logs)

    def _attach_cameras(self, spool: Path) -> None:
        """Gives camera drivers the spool, the household's keys, the store and the restriction state."""
        assert self.hub is not None
        cameras = [d for d in self.drivers if d.name == "camera"]
        if not cameras:
            return
        from drivers.camera.clipcrypt import remove_partials

        removed = remove_partials(spool)
        if removed:
            log.warning("removed %d clip(s) left unfinished by a crash", removed)
        recipients = self._member_recipients()
        for camera in cameras:
            camera.set_spool(spool)  # type: ignore[attr-defined]
            if recipients:
                camera.set_recipients(recipients)  # type: ignore[attr-defined]
            camera.set_on_clip(self._store_clip)  # type: ignore[attr-defined]
            camera.set_restricted(Category.CAMERA in self.hub.restricted)  # type: ignore[attr-defined]
            self.hub.clip_handler = camera.handle_clip_request  # type: ignore[attr-defined]

    def _member_recipients(self) -> list[str]:
        path = self.config.state_path / "members.json"
        if not path.exists():
            log.warning("no household member keys yet (not provisioned): clips cannot be recorded")
            return []
        return [str(m["recipient"]) for m in json.loads(path.read_text())]

    async def _store_clip(self, clip: Clip, path: Path) -> None:
        assert self.store is not None
        await self.store.add_item(Lane.CLIPS, clip.started, msgspec.to_builtins(clip), ref=clip.clip_id)

    def _forget_erased(self, job: ErasureJob) -> None:
        if self.hub is None:
            return
        if job.scope == "all":
            self.hub.devices.clear()
        elif job.scope == "device":
            self.hub.devices.pop(job.target, None)

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
            "retention": self._retention,
            "erase": self._erase,
            "export": self._export,
            "job": self._job,
            "selftest": self._selftest,
            "diag": self._diag,
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
            "horizon": time.time() - self.config.retention.days * 86_400,
            **(self.retention.summary() if self.retention is not None else {"days": self.config.retention.days}),
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
