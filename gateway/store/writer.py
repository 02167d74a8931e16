"""The store's single writer: a thread that owns the write connection and commits in groups.

Readings wait up to ``commit_interval`` (or until ``commit_max_items``) so that many share one fsync; an *urgent* op
(an event, an alarm) commits at once and takes any waiting readings with it, so order is kept. A future resolves only
after its COMMIT returned: that is what *accepted* means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.errors import StoreError, StoreFullError

log = logging.getLogger(__name__)

WriteFn = Callable[[Connection], Any]


@dataclass(slots=True)
class WriteOp:
    """A unit of work run inside a batch transaction by the writer thread."""

    fn: WriteFn
    weight: int = 1
    urgent: bool = False
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    raw: bool = False
    """Run after the batch commits, outside any transaction (checkpoints, vacuum)."""
    result: Any = field(default=None)


_STOP = object()


def _is_disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and (
        getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(orig)
    )


class Writer:
    """Runs :class:`WriteOp` batches on one connection in one thread. The hooks let the store do per-batch work at
    the right moment: ``finish_batch`` inside the transaction (persist counters), ``after_commit`` once it is
    durable (wake the uplink), ``after_rollback`` when it failed (reload counters, drop unsaved keys)."""

    def __init__(
        self,
        engine: Engine,
        *,
        commit_interval: float,
        commit_max_items: int,
        finish_batch: Callable[[Connection], None],
        after_commit: Callable[[list[WriteOp]], None],
        after_rollback: Callable[[Connection], None],
    ) -> None:
        self._engine = engine
        self._interval = commit_interval
        self._max_items = commit_max_items
        self._finish_batch = finish_batch
        self._after_commit = after_commit
        self._after_rollback = after_rollback
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kotihub-store-writer", daemon=True)
        self._conn: Connection | None = None
        self.commits = 0
        self.last_commit: float | None = None
        self.last_error: str | None = None
        self.heartbeat = time.monotonic()

    @property
    def connection(self) -> Connection:
        assert self._conn is not None
        return self._conn

    @property
    def in_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def start(self) -> None:
        self._conn = self._engine.connect()
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, op: WriteOp) -> None:
        if not self._thread.is_alive():
            raise StoreError("the store writer is not running")
        self._queue.put(op)

    def stop(self) -> None:
        """Commits what is queued, then ends the thread and closes the connection."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                self.heartbeat = time.monotonic()
                continue
            if first is _STOP:
                break
            batch: list[WriteOp] = [first]
            weight = first.weight
            urgent = first.urgent
            deadline = time.monotonic() + self._interval
            while weight < self._max_items:
                try:
                    # Once anything urgent is in the batch, only what is already queued joins it: an alarm never
                    # waits for the group-commit deadline, whatever was queued after it.
                    if urgent:
                        nxt = self._queue.get_nowait()
                    else:
                        nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
                weight += nxt.weight
                urgent = urgent or nxt.urgent
            self._commit(batch)
            self.heartbeat = time.monotonic()

    def _commit(self, batch: list[WriteOp]) -> None:
        assert self._conn is not None
        conn = self._conn
        txn_ops = [op for op in batch if not op.raw]
        try:
            with conn.begin():
                for op in txn_ops:
                    op.result = op.fn(conn)
                self._finish_batch(conn)
        except Exception as exc:  # every failure must reach the waiting futures, never kill the writer
            self._fail(batch, exc)
            return
        for op in batch:
            if op.raw:
                try:
                    op.result = op.fn(conn)
                except Exception as exc:
                    log.error("store maintenance failed: %s", exc)
                    _resolve(op, None, StoreError(f"maintenance failed: {exc}"))
                    op.future = None
        self.commits += 1
        self.last_commit = time.time()
        self.last_error = None
        self._after_commit(batch)
        for op in batch:
            _resolve(op, op.result, None)

    def _fail(self, batch: list[WriteOp], exc: Exception) -> None:
        error: Exception
        if _is_disk_full(exc):
            error = StoreFullError("the disk is full; the write was not accepted")
        elif isinstance(exc, StoreError):
            error = exc
        else:
            error = StoreError(f"the write failed and was rolled back: {exc}")
        self.last_error = str(error)
        log.error("store commit failed, %d ops not accepted: %s", len(batch), error)
        try:
            self._after_rollback(self._conn) if self._conn is not None else None
        except sa.exc.SQLAlchemyError:
            log.exception("could not reload store counters after a rollback")
        for op in batch:
            _resolve(op, None, error)


def _resolve(op: WriteOp, result: Any, error: BaseException | None) -> None:
    fut, loop = op.future, op.loop
    if fut is None or loop is None:
        return

    def _set() -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
        loop.call_soon_threadsafe(_set)
