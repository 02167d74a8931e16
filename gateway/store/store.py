"""The encrypted store: the async face the daemon uses, over one writer thread and reader connections.

Every item gets its ``(lane, seq)`` in the same transaction that stores it. A write's awaitable resolves only after
its commit returned (``synchronous=FULL``): that is what *accepted* means everywhere in kotihub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import crypto
from gateway.errors import StoreClosedError, StoreCorruptError, StoreFullError
from gateway.model import DeviceInfo, Event, Lane, Reading
from gateway.store import deletion, keys, outbox, readings, records, schema
from gateway.store import engine as engines
from gateway.store.cursors import LaneCursors
from gateway.store.deletion import DELETE_SLICE_S
from gateway.store.driver_state import erase_device
from gateway.store.outbox import OutboxItem
from gateway.store.records import AuditEntry, DeviceRecord, Settings
from gateway.store.writer import WriteOp, Writer

__all__ = ["DB_NAME", "AuditEntry", "DeviceRecord", "OutboxItem", "Settings", "Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")
DB_NAME: Final = "kotihub.db"
SPACE_CHECK_S: Final = 1.0
ALL_TABLES: Final = (
    schema.reading_frames,
    schema.items,
    schema.devices,
    schema.driver_state,
    schema.audit,
    schema.dead_letters,
)
"""What erasing everything empties (after destroying every key)."""

_json = msgspec.json.Encoder()


class Store:
    """Open with :meth:`open` (a context manager); close flushes everything queued."""

    def __init__(
        self,
        state_dir: Path,
        master_key: bytes,
        algorithm: crypto.Algorithm,
        *,
        commit_interval: float = 1.0,
        commit_max_items: int = 5_000,
        max_pending_readings: int = 200_000,
        journal_size_limit: int = 4 * 1024 * 1024,
        min_free_bytes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = state_dir / DB_NAME
        self.state_dir = state_dir
        self._clock = clock
        self._max_pending = max_pending_readings
        self._min_free = min_free_bytes
        self._space_checked = -SPACE_CHECK_S
        self._space_low = False
        self._journal_size_limit = journal_size_limit
        self.quarantined: Path | None = None
        self._open_db()
        self.keyring = crypto.KeyRing(master_key, algorithm, self._load_wrapped, self._save_wrapped)
        self._tag_key = self.keyring.derive_tag_key()
        self._writer = Writer(
            self._engine,
            commit_interval=commit_interval,
            commit_max_items=commit_max_items,
            finish_batch=self._finish_batch,
            after_commit=self._after_commit,
            after_rollback=self._after_rollback,
        )
        self._reader = engines.make_engine(self.path, journal_size_limit=journal_size_limit, writer=False)
        self._cursors = LaneCursors()
        self._frame_buffer: list[Reading] = []
        self._frame_first_seq = 0
        self._open_readings: list[Reading] | None = None
        self._open_future: asyncio.Future[Any] | None = None
        self._open_extras: dict[str, Callable[[Connection], None]] = {}
        self._batch_extras: dict[str, Callable[[Connection], None]] = {}
        """Writer thread: ``ride_along`` records of the batch being written, run once each by _finish_batch."""
        self._commit_max_items = commit_max_items
        self._audit_id = 0
        with self._engine.connect() as conn:
            self._after_rollback(conn)
        self._pending_readings = 0
        self._space_ok = asyncio.Event()
        self._space_ok.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lane_waiters: dict[str, asyncio.Event] = {lane.value: asyncio.Event() for lane in Lane}
        self.rejected_full = 0
        self._closed = False
        self._writer.start()

    # ---- opening -------------------------------------------------------------------------------------------------

    def _open_db(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            engines.check_integrity(self.path)
        except StoreCorruptError as exc:
            self.quarantined = engines.quarantine(self.path, str(exc))
        if not self.path.exists():
            engines.create_database(self.path)
        self._engine = engines.make_engine(self.path, journal_size_limit=self._journal_size_limit)
        with self._engine.begin() as conn:
            schema.migrate(conn)
        self.path.chmod(0o600)

    @classmethod
    def open(cls, state_dir: Path, master_key: bytes, algorithm: crypto.Algorithm, **kw: Any) -> Store:
        return cls(state_dir, master_key, algorithm, **kw)

    async def __aenter__(self) -> Store:
        self._loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Commits everything queued, then closes; later writes fail with StoreClosedError."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.stop)
        self._engine.dispose()
        self._reader.dispose()

    # ---- keys ----------------------------------------------------------------------------------------------------

    def _load_wrapped(self, epoch: int) -> bytes | None:
        if self._writer.in_writer_thread:
            return keys.load_wrapped(self._writer.connection, epoch)
        with self._reader.connect() as conn:
            return keys.load_wrapped(conn, epoch)

    def _save_wrapped(self, epoch: int, wrapped: bytes) -> None:
        # Only the writer creates keys, inside the batch that first uses them: the key commits with its data or not
        # at all (a rollback drops it from the cache, see _after_rollback).
        assert self._writer.in_writer_thread
        keys.save_wrapped(self._writer.connection, epoch, wrapped)

    def device_tag(self, device_id: str) -> str:
        return keys.device_tag(self._tag_key, device_id)

    # ---- writer hooks (writer thread) ----------------------------------------------------------------------------

    def _finish_batch(self, conn: Connection) -> None:
        extras, self._batch_extras = self._batch_extras, {}
        for extra in extras.values():
            extra(conn)
        if self._frame_buffer:
            readings.write(conn, self.keyring, self._frame_buffer, self._frame_first_seq)
            self._frame_buffer = []
        self._cursors.write(conn)

    def _after_commit(self, batch: list[WriteOp]) -> None:
        grown = self._cursors.take_grown()
        loop = self._loop
        if loop is None:
            return
        for lane in grown:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._lane_waiters[lane].set)

    def _after_rollback(self, conn: Connection) -> None:
        # Reload what the database really holds: counters and keys of a failed batch must not survive it.
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            self._cursors.reload(conn)
            self._audit_id = records.last_audit_id(conn)
        self._frame_buffer = []
        self._batch_extras = {}
        self.keyring.forget_all()

    # ---- submitting ----------------------------------------------------------------------------------------------

    def _submit(self, fn: Callable[[Connection], Any], *, weight: int = 1, urgent: bool = False) -> asyncio.Future[Any]:
        if self._closed:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[Any] = loop.create_future()
        self._writer.submit(WriteOp(fn=fn, weight=weight, urgent=urgent, future=fut, loop=loop))
        return fut

    def _check_space(self) -> None:
        if not self._min_free:
            return
        now = time.monotonic()
        if now - self._space_checked > SPACE_CHECK_S:  # a statvfs per submit would cost more than the submit
            self._space_checked = now
            self._space_low = shutil.disk_usage(self.state_dir).free < self._min_free
        if self._space_low:
            raise StoreFullError(f"less than {self._min_free} bytes free on the state disk; readings refused")

    def submit_readings(self, readings: Sequence[Reading]) -> asyncio.Future[Any]:
        """Queues readings for the next group commit; the future resolves to ``(lane, last_seq)`` when accepted.

        Readings submitted in the same event-loop tick share one write op (and one future), so a driver handing over
        a few readings per message costs a list extend, not a thread hand-off. Raises StoreFullError at once when the
        disk is below its reserve (the readings are not accepted).
        """
        if self._closed:
            raise StoreClosedError("the store is closed")
        try:
            self._check_space()
        except StoreFullError:
            self.rejected_full += len(readings)
            raise
        if self._open_readings is None or self._open_future is None:
            loop = asyncio.get_running_loop()
            holder: list[Reading] = []
            self._open_readings = holder
            self._open_future = loop.create_future()
            # Registered before any caller awaits it, so the counts are right when the caller resumes.
            self._open_future.add_done_callback(lambda f: self._readings_done(len(holder), f))
            loop.call_soon(self._dispatch_readings)
        fut = self._open_future
        self._open_readings.extend(readings)
        self._pending_readings += len(readings)
        if self._pending_readings >= self._max_pending:
            self._space_ok.clear()
        if len(self._open_readings) >= self._commit_max_items:
            self._dispatch_readings()
        return fut

    def _dispatch_readings(self) -> None:
        batch, fut, extras = self._open_readings, self._open_future, self._open_extras
        self._open_readings = self._open_future = None
        self._open_extras = {}
        if not batch or fut is None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop

        def write(conn: Connection) -> int:
            self._batch_extras.update(extras)
            return self._buffer_readings(batch)

        self._writer.submit(WriteOp(fn=write, weight=len(batch), future=fut, loop=loop))

    def ride_along(self, key: str, fn: Callable[[Connection], None]) -> asyncio.Future[Any]:
        """Runs ``fn(conn)`` in the transaction of the readings submitted in this event-loop tick, so both commit or
        neither does (a driver's record of what it handled, beside what it produced). It runs at the end of that
        batch, once per ``key``: a later ``fn`` with the same key in the same batch replaces the earlier one (a record
        rewritten per message is written once per commit). With no readings open, ``fn`` is queued on its own."""
        if self._open_readings is None or self._open_future is None:
            return self._submit(lambda conn: self._batch_extras.__setitem__(key, fn))
        self._open_extras[key] = fn
        return self._open_future

    def commit_soon(self) -> asyncio.Future[Any]:
        """Ends the group-commit wait: what is queued (open readings included) commits now; resolves after it."""
        self._dispatch_readings()
        return self._submit(lambda conn: None, urgent=True)

    def _readings_done(self, count: int, fut: asyncio.Future[Any]) -> None:
        self._pending_readings -= count
        if not fut.cancelled() and isinstance(fut.exception(), StoreFullError):
            self.rejected_full += count
        if self._pending_readings < self._max_pending:
            self._space_ok.set()

    async def add_readings(self, readings: Sequence[Reading]) -> int:
        """Stores readings and returns the last sequence of their commit once they are accepted (committed)."""
        await self._space_ok.wait()
        return int(await self.submit_readings(readings))

    async def wait_for_room(self) -> None:
        """Back-pressure: returns when fewer than ``max_pending_readings`` wait for a commit."""
        await self._space_ok.wait()

    def _buffer_readings(self, readings: list[Reading]) -> int:
        # Sequences are allocated now, in submission order; the frame itself is written once per batch, in
        # _finish_batch, so all readings of a commit share one compressed, encrypted row.
        lane = Lane.READINGS.value
        first = self._cursors.alloc(lane, len(readings))
        if not self._frame_buffer:
            self._frame_first_seq = first
        self._frame_buffer.extend(readings)
        return first + len(readings) - 1

    async def add_event(self, event: Event) -> int:
        """Stores an event, committed at once (alarms never wait for a group commit); returns its sequence."""
        body: dict[str, Any] = {
            "device_id": event.device_id,
            "kind": event.kind.value,
            "state": event.state,
            "ts": event.ts,
            "attrs": dict(event.attrs),
        }
        return await self.add_item(event.lane, event.ts, body, urgent=True)

    async def add_item(
        self, lane: Lane | str, ts: float, body: dict[str, Any], *, ref: str | None = None, urgent: bool = True
    ) -> int:
        """Stores one outbox item (event, clip record, diagnostics) encrypted; returns its sequence when accepted."""
        lane_name = Lane(lane).value
        plaintext = _json.encode(body)

        def write(conn: Connection) -> int:
            seq = self._cursors.alloc(lane_name, 1)
            outbox.write_item(conn, self.keyring, lane_name, seq, ts, plaintext, ref)
            return seq

        return int(await self._submit(write, urgent=urgent))

    async def upsert_device(self, info: DeviceInfo, *, seen: float | None = None) -> bool:
        """Registers or updates a device; returns True if it was new."""
        tag = self.device_tag(info.device_id)
        now = seen if seen is not None else self._clock()
        blob_plain = msgspec.msgpack.encode(info)

        def write(conn: Connection) -> bool:
            return records.upsert_device(conn, self.keyring, tag, blob_plain, now)

        # Committed at once: discovery is rare, and a driver announcing forty devices must not wait forty group
        # commits before its first reading.
        return bool(await self._submit(write, urgent=True))

    async def touch_devices(self, last_seen: dict[str, float]) -> None:
        """Persists last-seen times (the hub batches these: writing one per message would wear the card)."""
        by_tag = {self.device_tag(d): s for d, s in last_seen.items()}

        def write(conn: Connection) -> None:
            records.touch_devices(conn, by_tag)

        await self._submit(write)

    async def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
        """Records a change to personal data (who, what, when), encrypted; committed at once."""
        ts = self._clock()
        entry = msgspec.msgpack.encode(AuditEntry(ts, actor, action, subject, detail or {}))

        def write(conn: Connection) -> None:
            self._audit_id += 1
            records.write_audit(conn, self.keyring, self._audit_id, ts, entry)

        await self._submit(write, urgent=True)

    def mark_synced(self, lane: Lane | str, upto_seq: int) -> asyncio.Future[Any]:
        """Moves the lane's synced cursor forward (never back). Not urgent: the uplink keeps its own cursor in memory,
        and a cursor lost in a crash only means a resend that the register deduplicates."""
        lane_name = Lane(lane).value
        now = self._clock()

        def write(conn: Connection) -> None:
            if self._cursors.sync(lane_name, upto_seq):
                LaneCursors.stamp_sync(conn, lane_name, now)

        fut = self._submit(write)
        fut.add_done_callback(_log_cursor_failure)
        return fut

    async def dead_letter(self, lane: Lane | str, seq: int, reason: str) -> None:
        lane_name = Lane(lane).value
        now = self._clock()

        def write(conn: Connection) -> None:
            outbox.write_dead_letter(conn, lane_name, seq, now, reason)

        await self._submit(write, urgent=True)

    async def set_setting(self, key: str, value: Any) -> None:
        await self.edit_settings(lambda settings: settings.put(key, value))

    async def edit_settings(self, fn: Callable[[Settings], T]) -> T:
        """Runs ``fn`` on the settings in one writer transaction (a read-modify-write of several keys commits
        together, or not at all); returns its result when committed."""
        return await self._submit(lambda conn: fn(Settings(conn)), urgent=True)  # type: ignore[no-any-return]

    async def run_write(self, fn: Callable[[Connection], Any], *, urgent: bool = True) -> Any:
        """Runs ``fn(conn)`` in the writer's transaction and returns its result when committed (tests and tools; the
        hub's own code calls the named operations)."""

        return await self._submit(fn, urgent=urgent)

    def run_write_soon(self, fn: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        """Queues ``fn(conn)`` for the next group commit and returns its future at once (no await needed)."""
        return self._submit(fn)

    async def scrub(self) -> dict[str, int]:
        """Truncates the WAL after a checkpoint and returns free pages to the filesystem.

        With ``secure_delete`` deleted content is already zeroed in the database file; the WAL still holds old page
        images until it is checkpointed and truncated, which is what this does.
        """

        def raw(conn: Connection) -> dict[str, int]:
            driver = conn.connection.driver_connection
            assert driver is not None
            busy, wal_pages, moved = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            driver.execute("PRAGMA incremental_vacuum")
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return {"busy": int(busy), "wal_pages": int(wal_pages), "checkpointed": int(moved)}

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._writer.submit(WriteOp(fn=raw, urgent=True, raw=True, future=fut, loop=loop))
        return dict(await fut)

    async def settle_cursors(self) -> None:
        """Marks every lane synced up to its last sequence (after erasing everything: nothing is left to send;
        sequences are never reused, since the register deduplicates on them)."""

        await self._submit(lambda conn: self._cursors.settle(), urgent=True)

    async def flush(self) -> None:
        """Returns when everything queued before it is committed."""
        # Readings of this event-loop tick are still gathering (dispatched by call_soon): send them first, or the
        # flush would overtake them.
        self._dispatch_readings()
        await self._submit(lambda conn: None, urgent=True)

    # ---- reading -------------------------------------------------------------------------------------------------

    def lane_waiter(self, lane: Lane | str) -> asyncio.Event:
        """Set after a commit that added to ``lane``; the uplink clears it before looking for work."""
        return self._lane_waiters[Lane(lane).value]

    def synced_seq(self, lane: Lane | str) -> int:
        return self._cursors.synced[Lane(lane).value]

    def newest_seq(self, lane: Lane | str) -> int:
        """The newest seq given out on ``lane`` (0 before the first item); for the uplink's health heartbeat."""
        return self._cursors.next[Lane(lane).value] - 1

    async def pending(self, lane: Lane | str, *, after: int | None = None, limit: int = 1000) -> list[OutboxItem]:
        """Unsynced items of ``lane`` after ``after`` (default: the durable cursor), oldest first."""
        lane_name = Lane(lane).value
        start = self._cursors.synced[lane_name] if after is None else after
        return await asyncio.to_thread(self._pending_sync, lane_name, start, limit)

    def _pending_sync(self, lane: str, after: int, limit: int) -> list[OutboxItem]:
        with self._reader.connect() as conn, conn.begin():
            if lane == Lane.READINGS.value:
                return readings.pending(conn, self.keyring, after, limit)
            return outbox.pending(conn, self.keyring, lane, after, limit)

    def iter_readings(self, *, since_seq: int = 0, skip_destroyed: bool = False) -> Iterator[tuple[int, Reading]]:
        """Every stored reading with its sequence, decrypted, oldest first (export, tests). Runs in the caller's
        thread: call it from a worker thread in async code. ``skip_destroyed`` passes over frames whose day key
        retention or erasure destroyed, instead of raising KeyDestroyedError."""
        with self._reader.connect() as conn:
            yield from readings.iter_all(conn, self.keyring, since_seq=since_seq, skip_destroyed=skip_destroyed)

    def iter_items(self, lane: Lane | str, *, skip_destroyed: bool = False) -> Iterator[OutboxItem]:
        with self._reader.connect() as conn:
            yield from outbox.iter_items(conn, self.keyring, Lane(lane).value, skip_destroyed=skip_destroyed)

    def iter_audit(self, *, skip_destroyed: bool = False) -> Iterator[AuditEntry]:
        with self._reader.connect() as conn:
            yield from records.iter_audit(conn, self.keyring, skip_destroyed=skip_destroyed)

    def read(self, fn: Callable[[Connection], Any]) -> Any:
        """Runs ``fn`` on a reader connection (a consistent snapshot); call from a worker thread in async code."""
        with self._reader.connect() as conn:
            return fn(conn)

    def iter_devices(self, *, skip_destroyed: bool = False) -> Iterator[DeviceRecord]:
        """The device registry, decrypted (call from a worker thread in async code)."""
        with self._reader.connect() as conn:
            yield from records.iter_devices(conn, self.keyring, skip_destroyed=skip_destroyed)

    async def devices(self) -> list[DeviceRecord]:
        return await asyncio.to_thread(lambda: list(self.iter_devices()))

    async def depth(self) -> dict[str, int]:
        """Items waiting to be synced, per lane."""

        def read() -> dict[str, int]:
            with self._reader.connect() as conn:
                return {
                    lane.value: readings.depth(conn, self._cursors.synced[lane.value])
                    if lane is Lane.READINGS
                    else outbox.depth(conn, lane.value, self._cursors.synced[lane.value])
                    for lane in Lane
                }

        return await asyncio.to_thread(read)

    async def dead_letters(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.read, outbox.dead_letters)

    async def get_setting(self, key: str, default: Any = None) -> Any:
        return await asyncio.to_thread(self.read, lambda conn: Settings(conn).get(key, default))

    async def has_clip(self, clip_id: str) -> bool:
        """Whether the clip is still indexed (its record not erased or expired)."""
        return bool(await asyncio.to_thread(self.read, lambda conn: outbox.has_ref(conn, Lane.CLIPS.value, clip_id)))

    def count_records(self) -> int:
        """Readings and outbox items held (the export's progress total); call from a worker thread."""
        return int(self.read(lambda conn: readings.count_all(conn) + outbox.count_all(conn)))

    # ---- deletion: retention and erasure, one committed, time-boxed slice at a time --------------------------------

    async def _in_slices(
        self,
        step: deletion.Step,
        *,
        budget_s: float = DELETE_SLICE_S,
        on_slice: Callable[[int, float], None] | None = None,
    ) -> tuple[int, list[str]]:
        return await deletion.in_slices(self._submit, step, budget_s=budget_s, on_slice=on_slice)

    def count_expired(self, last_epoch: int) -> dict[str, int]:
        """What retention would destroy for days up to ``last_epoch``; call from a worker thread."""

        def count(conn: Connection) -> dict[str, int]:
            return {
                "days": keys.count_days_through(conn, last_epoch),
                "readings": readings.count_days_through(conn, last_epoch),
                "items": outbox.count_days_through(conn, last_epoch),
            }

        return dict(self.read(count))

    async def shred_days_through(self, last_epoch: int) -> int:
        """Crypto-shreds every day up to ``last_epoch`` in one small transaction (their records are unreadable
        from that commit on); returns how many days."""
        epochs: list[int] = await self._submit(lambda conn: keys.shred_days_through(conn, last_epoch), urgent=True)
        for epoch in epochs:
            self.keyring.forget(epoch)
        return len(epochs)

    async def purge_days_through(
        self,
        last_epoch: int,
        *,
        budget_s: float = DELETE_SLICE_S,
        on_slice: Callable[[str, int, float], None] | None = None,
    ) -> tuple[dict[str, int], list[str]]:
        """Deletes the reading frames, outbox items and audit entries of every day up to ``last_epoch`` (after
        :meth:`shred_days_through`). Returns the rows deleted by ``frames``, ``items`` and ``audit``, and the clip
        references of deleted items (their spool files are the caller's). ``on_slice(kind, rows, seconds)``."""
        counts: dict[str, int] = {}
        refs: list[str] = []
        for kind, table in (("frames", schema.reading_frames), ("items", schema.items), ("audit", schema.audit)):

            def each(rows: int, seconds: float, kind: str = kind) -> None:
                if on_slice is not None:
                    on_slice(kind, rows, seconds)

            step = deletion.delete_where(table, table.c.epoch <= last_epoch)
            counts[kind], more = await self._in_slices(step, budget_s=budget_s, on_slice=each)
            refs += more
        return counts, refs

    async def purge_dead_letters(self, before: float, *, budget_s: float = DELETE_SLICE_S) -> int:
        """Deletes dead letters recorded before ``before`` (they are not sealed under a day key)."""
        step = deletion.delete_where(schema.dead_letters, schema.dead_letters.c.ts < before)
        return (await self._in_slices(step, budget_s=budget_s))[0]

    async def erase_everything(self) -> dict[str, int]:
        """Destroys every key, then deletes every record in slices and settles the cursors (nothing is left to
        send; sequences are never reused). Returns the keys destroyed and the rows deleted by table."""
        counts = {"keys_destroyed": int(await self._submit(keys.shred_all, urgent=True))}
        self.keyring.forget_all()
        for table in ALL_TABLES:
            counts[table.name], _ = await self._in_slices(deletion.delete_where(table, sa.true()))
        await self.settle_cursors()
        return counts

    async def erase_readings(self, device: str | None, *, budget_s: float = DELETE_SLICE_S) -> int:
        """Blanks ``device``'s readings (every reading for None) in their frames; returns how many."""
        return (await self._in_slices(deletion.blank_readings(self.keyring, device), budget_s=budget_s))[0]

    async def erase_items(
        self,
        lane: Lane | str,
        *,
        device: str | None = None,
        kinds: tuple[str, ...] | None = None,
        budget_s: float = DELETE_SLICE_S,
    ) -> tuple[int, list[str]]:
        """Deletes ``lane``'s items about ``device`` of ``kinds`` (None: any); returns how many and their clip refs."""
        step = deletion.delete_items(self.keyring, Lane(lane).value, device=device, kinds=kinds)
        return await self._in_slices(step, budget_s=budget_s)

    async def forget_device(self, device: str) -> dict[str, int]:
        """Deletes the device's registry record and what drivers kept about it (adoption, replay counters)."""
        tag = self.device_tag(device)

        def write(conn: Connection) -> dict[str, int]:
            return {"devices": records.delete_device(conn, tag), "driver_records": erase_device(conn, tag)}

        return dict(await self._submit(write, urgent=True))

    def health(self) -> dict[str, Any]:
        writer = self._writer
        return {
            "writer_alive": writer.alive,
            "writer_heartbeat_age": time.monotonic() - writer.heartbeat,
            "commits": writer.commits,
            "last_commit": writer.last_commit,
            "last_error": writer.last_error,
            "pending_readings": self._pending_readings,
            "rejected_full": self.rejected_full,
            "quarantined": str(self.quarantined) if self.quarantined else None,
        }

    @property
    def healthy(self) -> bool:
        return self._writer.alive and not self._closed

    def disk_usage(self) -> dict[str, int]:
        usage = shutil.disk_usage(self.state_dir)
        db_bytes = sum(
            p.stat().st_size for p in (self.path, *(Path(str(self.path) + s) for s in engines.SIDE_FILES)) if p.exists()
        )
        return {"db_bytes": db_bytes, "free_bytes": usage.free, "total_bytes": usage.total}


def _log_cursor_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("could not save a sync cursor (the batch will be resent): %s", fut.exception())
