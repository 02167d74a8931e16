"""The control socket's commands (``kotihub status``, ``erase``, ...): one method each, named in :meth:`table` with
the Struct its arguments decode into (:mod:`gateway.control_api`).

A new command is one line in the table, its arguments in ``control_api`` and one method here; the daemon only
serves the table.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import adoption, diag, selftest
from gateway.control import Command, ControlError
from gateway.control_api import (
    AdoptArgs,
    Adopted,
    Args,
    DeviceView,
    DiscoverArgs,
    DiscoveredView,
    DiscoveryFailed,
    EraseArgs,
    ExportArgs,
    JobArgs,
    JobStarted,
    RenameArgs,
    Renamed,
    RestrictArgs,
    RetentionArgs,
    SelftestArgs,
    SyncArgs,
)
from gateway.jobs import Job
from gateway.model import Category
from gateway.privacy import RECEIPTS_KEY, ExportProgress, export_archive
from gateway.retention import RetentionReport

if TYPE_CHECKING:
    from gateway.daemon import Daemon


def _installed_version() -> str:
    try:
        return importlib.metadata.version("kotihub")
    except importlib.metadata.PackageNotFoundError:
        return ""


_VERSION = _installed_version()
"""The release this daemon runs: the updater confirms a switch only when the daemon answering is the new one."""


async def _report(coro: Awaitable[RetentionReport]) -> dict[str, Any]:
    report = await coro
    return {k: v for k, v in vars(report).items() if k != "history"}


class ControlHandlers:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def table(self) -> dict[str, Command[Any]]:
        return {
            "status": Command(Args, self.status),
            "devices": Command(Args, self.devices),
            "discover": Command(DiscoverArgs, self.discover),
            "adopt": Command(AdoptArgs, self.adopt),
            "restrict": Command(RestrictArgs, self.restrict),
            "rename": Command(RenameArgs, self.rename),
            "sync": Command(SyncArgs, self.sync),
            "retention": Command(RetentionArgs, self.retention),
            "erase": Command(EraseArgs, self.erase),
            "receipts": Command(Args, self.receipts),
            "export": Command(ExportArgs, self.export),
            "job": Command(JobArgs, self.job),
            "selftest": Command(SelftestArgs, self.selftest),
            "diag": Command(Args, self.diag),
        }

    async def sync(self, args: SyncArgs) -> dict[str, Any]:
        if self.d.uplink is None:
            raise ControlError("the uplink is not running (not enabled in the config, or the hub is not provisioned)")
        if args.now:
            self.d.uplink.kick()
        assert self.d.store is not None
        return {**self.d.uplink.summary(), "depth": await self.d.store.depth()}

    async def job(self, args: JobArgs) -> dict[str, Any]:
        job = self.d.jobs.get(args.id)
        if job is None:
            raise ControlError("no such job")
        return job.view()

    async def retention(self, args: RetentionArgs) -> dict[str, Any]:
        assert self.d.retention is not None
        retention = self.d.retention
        if args.run:
            job = Job("retention")

            def progress(step: str, n: int) -> None:
                job.done += n
                job.step = step

            job.total = sum((await retention.due()).values())
            self.d.jobs.start(
                "retention",
                lambda: _report(retention.run_once(force_time=args.force, progress=progress)),
                job,
            )
            return {"job": job.job_id}
        return {**retention.summary(), "due": await retention.due()}

    async def erase(self, args: EraseArgs) -> JobStarted:
        assert self.d.eraser is not None
        eraser = self.d.eraser
        if not args.confirm:
            raise ControlError("erasure needs an explicit confirmation")
        if self.d.jobs.running("erase"):
            raise ControlError("an erasure is already running")
        scope, target = args.scope, args.target
        if scope == "device" and self.d.hub is not None and target not in self.d.hub.devices:
            raise ControlError(f"no such device: {target}")
        if scope == "category" and target not in {c.value for c in Category}:
            raise ControlError(f"category must be one of {', '.join(c.value for c in Category)}")
        job = self.d.jobs.start("erase", lambda: eraser.request(scope, target, requested_by=args.actor))
        return JobStarted(job=job.job_id)

    async def receipts(self, args: Args) -> dict[str, Any]:
        store, eraser = self.d.store, self.d.eraser
        assert store is not None and eraser is not None
        waiting = [r["receipt_id"] for r in await eraser.outbox.pending()]
        return {"receipts": await store.get_setting(RECEIPTS_KEY, []), "waiting_for_register": waiting}

    async def export(self, args: ExportArgs) -> JobStarted:
        assert self.d.store is not None
        store = self.d.store
        # The runtime directory is the kotihub group's (0750): a technician in the group can collect the file.
        exports = Path(self.d.config.hub.runtime_dir) / "exports"
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
                hub_name=self.d.config.hub.name,
                spool_dir=self.d.config.state_path / "spool",
                progress=progress,
            )
            await store.audit(args.actor, "export", "all", {"counts": progress.counts})
            return {"path": str(out), "counts": progress.counts}

        self.d.jobs.start("export", run, job)
        return JobStarted(job=job.job_id)

    async def selftest(self, args: SelftestArgs) -> list[dict[str, Any]]:
        return await selftest.run_checks(self.d, alarm_test=args.alarm_test)

    async def diag(self, args: Args) -> dict[str, Any]:
        return await diag.bundle(self.d, self.d.recent_logs)

    async def status(self, args: Args) -> dict[str, Any]:
        assert self.d.store is not None and self.d.hub is not None
        store = self.d.store
        summary = self.d.hub.summary()
        summary["store"] = {
            "depth": await store.depth(),
            "dead_letters": len(await store.dead_letters()),
            **store.health(),
            **store.disk_usage(),
        }
        summary["retention"] = {
            "horizon": time.time() - self.d.config.retention.days * 86_400,
            **(self.d.retention.summary() if self.d.retention is not None else {"days": self.d.config.retention.days}),
        }
        summary["hub"] = {"name": self.d.config.hub.name, "version": _VERSION}
        summary["tasks"] = self.d.supervisor.summary()
        if self.d.sirens is not None:
            summary["sirens"] = self.d.sirens.summary(self.d.hub.devices)
        for name, fn in self.d.status_extras.items():
            summary[name] = await fn()
        return summary

    async def devices(self, args: Args) -> list[DeviceView]:
        assert self.d.hub is not None
        return [
            DeviceView(
                device_id=state.info.device_id,
                driver=state.info.driver,
                kind=state.info.kind.value,
                name=state.info.name,
                room=state.info.room,
                model=state.info.model,
                online=state.online,
                battery=state.battery,
                first_seen=state.first_seen,
                last_seen=state.last_seen,
            )
            for state in sorted(self.d.hub.devices.values(), key=lambda s: s.info.device_id)
        ]

    async def discover(self, args: DiscoverArgs) -> list[DiscoveredView | DiscoveryFailed]:
        assert self.d.hub is not None
        results = await asyncio.gather(*(d.discover(args.timeout) for d in self.d.drivers), return_exceptions=True)
        found: list[DiscoveredView | DiscoveryFailed] = []
        for driver, result in zip(self.d.drivers, results, strict=True):
            if isinstance(result, BaseException):
                found.append(DiscoveryFailed(driver=driver.name, error=str(result)))
                continue
            found += [
                DiscoveredView(
                    device_id=item.device_id,
                    driver=item.driver,
                    kind=item.kind.value,
                    model=item.model,
                    address=item.address,
                    rssi=item.rssi,
                    known=item.device_id in self.d.hub.devices,
                )
                for item in result
            ]
        return found

    async def adopt(self, args: AdoptArgs) -> Adopted:
        assert self.d.store is not None
        return await adoption.adopt(self.d.drivers, self.d.store, args)

    async def restrict(self, args: RestrictArgs) -> list[str]:
        assert self.d.hub is not None
        await self.d.hub.set_restricted(args.category, args.on, actor=args.actor)
        return sorted(c.value for c in self.d.hub.restricted)

    async def rename(self, args: RenameArgs) -> Renamed:
        assert self.d.hub is not None
        if args.device_id not in self.d.hub.devices:
            raise ControlError(f"no such device: {args.device_id}")
        await self.d.hub.rename(args.device_id, name=args.name, room=args.room, actor=args.actor)
        info = self.d.hub.devices[args.device_id].info
        return Renamed(device_id=args.device_id, name=info.name, room=info.room)
