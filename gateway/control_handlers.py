"""The control socket's commands (``kotihub status``, ``erase``, ...): one method each, named in :meth:`table`.

A new command is one line in the table and one method here; the daemon only serves the table.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import adoption, diag, selftest
from gateway.control import ControlError, Handler
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

    def table(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "devices": self.devices,
            "discover": self.discover,
            "adopt": self.adopt,
            "restrict": self.restrict,
            "rename": self.rename,
            "sync": self.sync,
            "retention": self.retention,
            "erase": self.erase,
            "receipts": self.receipts,
            "export": self.export,
            "job": self.job,
            "selftest": self.selftest,
            "diag": self.diag,
        }

    async def sync(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.d.uplink is None:
            raise ControlError("the uplink is not running (not enabled in the config, or the hub is not provisioned)")
        if args.get("now"):
            self.d.uplink.kick()
        assert self.d.store is not None
        return {**self.d.uplink.summary(), "depth": await self.d.store.depth()}

    async def job(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.d.jobs.get(str(args.get("id", "")))
        if job is None:
            raise ControlError("no such job")
        return job.view()

    async def retention(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.d.retention is not None
        retention = self.d.retention
        if args.get("run"):
            job = Job("retention")

            def progress(step: str, n: int) -> None:
                job.done += n
                job.step = step

            job.total = sum((await retention.due()).values())
            self.d.jobs.start(
                "retention",
                lambda: _report(retention.run_once(force_time=bool(args.get("force")), progress=progress)),
                job,
            )
            return {"job": job.job_id}
        return {**retention.summary(), "due": await retention.due()}

    async def erase(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.d.eraser is not None
        eraser = self.d.eraser
        if args.get("confirm") is not True:
            raise ControlError("erasure needs an explicit confirmation")
        if self.d.jobs.running("erase"):
            raise ControlError("an erasure is already running")
        scope, target = str(args.get("scope", "")), str(args.get("target", ""))
        if scope == "device" and self.d.hub is not None and target not in self.d.hub.devices:
            raise ControlError(f"no such device: {target}")
        if scope == "category" and target not in {c.value for c in Category}:
            raise ControlError(f"category must be one of {', '.join(c.value for c in Category)}")
        if scope not in ("all", "device", "category"):
            raise ControlError("erase --all, --device ID or --category C")
        actor = str(args.get("actor", "household"))
        job = self.d.jobs.start("erase", lambda: eraser.request(scope, target, requested_by=actor))
        return {"job": job.job_id}

    async def receipts(self, args: dict[str, Any]) -> dict[str, Any]:
        store, eraser = self.d.store, self.d.eraser
        assert store is not None and eraser is not None
        waiting = [r["receipt_id"] for r in await eraser.outbox.pending()]
        return {"receipts": await store.get_setting(RECEIPTS_KEY, []), "waiting_for_register": waiting}

    async def export(self, args: dict[str, Any]) -> dict[str, Any]:
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
            await store.audit(str(args.get("actor", "household")), "export", "all", {"counts": progress.counts})
            return {"path": str(out), "counts": progress.counts}

        self.d.jobs.start("export", run, job)
        return {"job": job.job_id}

    async def selftest(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return await selftest.run_checks(self.d, alarm_test=bool(args.get("alarm_test")))

    async def diag(self, args: dict[str, Any]) -> dict[str, Any]:
        return await diag.bundle(self.d, self.d.recent_logs)

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
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
        for name, fn in self.d.status_extras.items():
            summary[name] = await fn()
        return summary

    async def devices(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.d.hub is not None
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
            for state in sorted(self.d.hub.devices.values(), key=lambda s: s.info.device_id)
        ]

    async def discover(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.d.hub is not None
        timeout = float(args.get("timeout", 5.0))
        if not 0 < timeout <= 120:
            raise ControlError("timeout must be between 0 and 120 seconds")
        results = await asyncio.gather(*(d.discover(timeout) for d in self.d.drivers), return_exceptions=True)
        found: list[dict[str, Any]] = []
        for driver, result in zip(self.d.drivers, results, strict=True):
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
                        "known": item.device_id in self.d.hub.devices,
                    }
                )
        return found

    async def adopt(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.d.store is not None
        return await adoption.adopt(self.d.drivers, self.d.store, args)

    async def restrict(self, args: dict[str, Any]) -> list[str]:
        assert self.d.hub is not None
        try:
            category = Category(args["category"])
        except (KeyError, ValueError):
            raise ControlError(f"category must be one of {', '.join(c.value for c in Category)}") from None
        await self.d.hub.set_restricted(category, bool(args.get("on", True)), actor=str(args.get("actor", "household")))
        return sorted(c.value for c in self.d.hub.restricted)

    async def rename(self, args: dict[str, Any]) -> dict[str, str]:
        assert self.d.hub is not None
        device_id = str(args.get("device_id", ""))
        if device_id not in self.d.hub.devices:
            raise ControlError(f"no such device: {device_id}")
        name, room = args.get("name"), args.get("room")
        for value in (name, room):
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                raise ControlError("names and rooms are text of at most 64 characters")
        await self.d.hub.rename(device_id, name=name, room=room, actor=str(args.get("actor", "household")))
        info = self.d.hub.devices[device_id].info
        return {"device_id": device_id, "name": info.name, "room": info.room}
