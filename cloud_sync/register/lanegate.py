"""Bulk lanes queue apart from the alarm lane in the register.

Ingest runs in the thread pool and takes a database connection for its transaction. Left alone, a region's worth of
catch-up batches would hold every pooled connection, and a smoke alarm's batch would queue behind them for one. So
the bulk lanes (events, readings, clips, diagnostics) wait for a turn in a queue of their own, which admits at most
:data:`ALARM_RESERVE` fewer than the process's pool holds, and the alarm lane never waits in it: there is always a
connection (and a thread) for an alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

ALARM_RESERVE = 2
"""Database connections of a process that bulk ingest never takes."""


class LaneGate:
    def __init__(self, connections: int) -> None:
        """``connections``: the most the process's database pool hands out at once (pool size + overflow)."""
        self.bulk_limit = max(1, connections - ALARM_RESERVE)
        self._bulk = asyncio.Semaphore(self.bulk_limit)

    async def run(self, lane: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in the thread pool: at once for the alarm lane, after its turn for a bulk lane."""
        if lane == "alarm":
            return await run_in_threadpool(fn, *args)
        async with self._bulk:
            return await run_in_threadpool(fn, *args)
