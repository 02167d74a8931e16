"""Retention: personal data is destroyed when its period ends (privacy notice: 6 months), and never early.

A run, when the clock is trusted:

1. **crypto-shred** — the data keys of every UTC day wholly older than the horizon are destroyed first, so from that
   moment every copy of that day's ciphertext (free pages, the WAL, worn-out flash blocks) is unreadable;
2. **delete** the rows and clip files of those days in small, time-boxed batches through the store's single writer,
   so ingest never waits behind a purge for more than a few tens of milliseconds;
3. **scrub** — checkpoint and truncate the WAL (``secure_delete`` has already zeroed deleted content in the file).

Clock safety: a hub must not purge on a clock it cannot trust — before the first NTP sync, at a date before this
release was built, or after a jump of more than a day that nothing has confirmed. It waits, says so in status, and
purges once a trusted source (NTP, or the register's own clock seen by the uplink) agrees with the local clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.privacy import RECEIPTS_KEY
from gateway.store import DELETE_SLICE_S, Settings, Store

log = logging.getLogger(__name__)


# No clock reading before this can be real: the release cannot have been built in the past of its own build.
BUILD_TIME: Final = 1_793_491_200.0  # 2026-11-01T00:00:00Z
JUMP_TOLERANCE_S: Final = 86_400.0
AGREEMENT_S: Final = 300.0
NTP_MARKER: Final = Path("/run/systemd/timesync/synchronized")
EXPORT_KEEP_S: Final = 7 * 86_400.0
"""Export archives (plaintext, for the household to collect) are deleted a week after they were written."""


@dataclass
class ClockTrust:
    """Decides whether the wall clock may be used to destroy data."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    ntp_marker: Path = NTP_MARKER
    build_time: float = BUILD_TIME
    _offset: float | None = None
    _confirmed_offset: float | None = None
    reason: str = "not yet checked"

    def confirm(self, reference_time: float, *, source: str) -> None:
        """A trusted source (the register's clock, an NTP sync) says what time it is now."""
        if abs(reference_time - self.wall()) <= AGREEMENT_S:
            if self._confirmed_offset is None:
                log.info("clock confirmed by %s", source)
            self._confirmed_offset = self.wall() - self.monotonic()
        else:
            log.warning("clock disagrees with %s by %.0f s; retention waits", source, reference_time - self.wall())

    def trusted(self) -> bool:
        now = self.wall()
        offset = now - self.monotonic()
        jumped = self._offset is not None and abs(offset - self._offset) > JUMP_TOLERANCE_S
        self._offset = offset
        if jumped:
            self._confirmed_offset = None
            log.warning("the wall clock jumped by more than a day; retention waits until the time is confirmed")
        if now < self.build_time:
            self.reason = "the clock is before this release's build date (no NTP sync yet?)"
            return False
        if self._confirmed_offset is not None and abs(offset - self._confirmed_offset) <= JUMP_TOLERANCE_S:
            self.reason = "confirmed"
            return True
        if not jumped and self._ntp_synced_since_boot():
            self._confirmed_offset = offset
            self.reason = "NTP synchronised"
            return True
        self.reason = "the clock jumped and is not confirmed yet" if jumped else "waiting for NTP or the register"
        return False

    def _ntp_synced_since_boot(self) -> bool:
        try:
            return self.ntp_marker.exists()
        except OSError:
            return False


@dataclass
class RetentionReport:
    ran_at: float | None = None
    horizon: float | None = None
    epochs_shredded: int = 0
    frames_deleted: int = 0
    items_deleted: int = 0
    audit_deleted: int = 0
    clip_files_deleted: int = 0
    exports_deleted: int = 0
    other_deleted: int = 0
    longest_batch_ms: float = 0.0
    waiting: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Retention:
    def __init__(
        self,
        store: Store,
        *,
        days: int,
        clock: ClockTrust | None = None,
        spool_dir: Path | None = None,
        exports_dir: Path | None = None,
        slice_s: float = DELETE_SLICE_S,
    ) -> None:
        self.store = store
        self.exports_dir = exports_dir
        self.days = days
        self.clock = clock or ClockTrust()
        self.spool_dir = spool_dir
        self.slice_s = slice_s
        self.last = RetentionReport()

    def horizon(self, now: float) -> float:
        return now - self.days * 86_400

    async def due(self, now: float | None = None) -> dict[str, int]:
        """What a run would destroy now: expired days, frames and items (for ``kotihub retention``)."""
        horizon = self.horizon(self.clock.wall() if now is None else now)
        return await asyncio.to_thread(self.store.count_expired, _last_expired_epoch(horizon))

    async def run_once(
        self, *, force_time: bool = False, progress: Callable[[str, int], None] | None = None
    ) -> RetentionReport:
        """One retention pass. Without a trusted clock it only records why it waits (``force_time`` is for tests
        and for a technician who has checked the clock by other means)."""
        report = RetentionReport(history=self.last.history[-9:])
        if not force_time and not self.clock.trusted():
            report.waiting = self.clock.reason
            report.ran_at = self.last.ran_at
            self.last = report
            log.warning("retention is waiting: %s", self.clock.reason)
            return report
        now = self.clock.wall()
        horizon = self.horizon(now)
        last_epoch = _last_expired_epoch(horizon)
        report.horizon = horizon

        # 1. Crypto-shred: one small transaction destroys every expired day's key.
        shredded = await self.store.shred_days_through(last_epoch)
        report.epochs_shredded = shredded
        if progress:
            progress("shred", shredded)

        # 2. Delete what the destroyed keys protected, a time-boxed slice at a time.
        def on_slice(kind: str, rows: int, seconds: float) -> None:
            report.longest_batch_ms = max(report.longest_batch_ms, seconds * 1000)
            if progress:
                progress(f"{kind}_deleted", rows)

        counts, clip_refs = await self.store.purge_days_through(last_epoch, budget_s=self.slice_s, on_slice=on_slice)
        report.frames_deleted, report.items_deleted, report.audit_deleted = (
            counts["frames"],
            counts["items"],
            counts["audit"],
        )
        report.clip_files_deleted = await asyncio.to_thread(self._delete_clip_files, clip_refs)
        # Records that are not sealed under a day key expire by their own time: dead letters, and erasure receipts
        # (a device erasure's names the device).
        report.other_deleted = await self.store.purge_dead_letters(horizon, budget_s=self.slice_s)
        report.other_deleted += await self.store.edit_settings(functools.partial(_expire_receipts, horizon=horizon))
        report.exports_deleted = await asyncio.to_thread(self._delete_old_exports, now)

        # 3. Scrub: the WAL still holds old page images until it is checkpointed and truncated.
        await self.store.scrub()
        report.ran_at = now
        report.history.append({"ran_at": now, "horizon": horizon, "days": shredded, "frames": report.frames_deleted})
        self.last = report
        if shredded:
            log.info("retention destroyed %d day(s) of data older than %d days", shredded, self.days)
        return report

    def _delete_clip_files(self, refs: list[str]) -> int:
        if self.spool_dir is None:
            return 0
        removed = 0
        for ref in refs:
            path = self.spool_dir / f"{ref}.age"
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def _delete_old_exports(self, now: float) -> int:
        if self.exports_dir is None or not self.exports_dir.exists():
            return 0
        removed = 0
        for path in self.exports_dir.glob("kotihub-export-*"):
            try:
                if now - path.stat().st_mtime > EXPORT_KEEP_S:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # retention must keep trying; the store reports its own health
                log.exception("retention run failed")
            await asyncio.sleep(interval)

    def summary(self) -> dict[str, Any]:
        r = self.last
        return {
            "days": self.days,
            "clock_trusted": self.clock.reason in ("confirmed", "NTP synchronised"),
            "clock": self.clock.reason,
            "waiting": r.waiting,
            "last_run": r.ran_at,
            "horizon": r.horizon,
            "last_shredded_days": r.epochs_shredded,
            "longest_batch_ms": round(r.longest_batch_ms, 1),
        }


def _expire_receipts(settings: Settings, *, horizon: float) -> int:
    receipts = settings.get(RECEIPTS_KEY)
    if receipts is None:
        return 0
    kept = [r for r in receipts if r.get("receipt", {}).get("completed_at", 0.0) >= horizon]
    if len(kept) != len(receipts):
        settings.put(RECEIPTS_KEY, kept)
    return len(receipts) - len(kept)


def _last_expired_epoch(horizon: float) -> int:
    """The newest UTC day that lies wholly before the horizon."""
    return int(horizon // 86_400) - 1
