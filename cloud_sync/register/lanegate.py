"""Bulk lanes queue apart from the alarm lane in the register.

Ingest (the hub's database check, decoding, the transaction) runs in a worker thread. Left alone, a region's worth of
catch-up batches would hold every pooled connection and every thread of the shared pool, and a smoke alarm's batch
would queue behind them. So:

* the bulk lanes (events, readings, clips, diagnostics) wait for a turn in a queue of their own, which admits at most
  :data:`SHARED_RESERVE` fewer than the process's database pool keeps open (the other routes keep those, and the
  pool's overflow), without holding a thread or a connection while they wait. Not the overflow: an overflow
  connection is closed when returned, and reopening one (a PostgreSQL backend, its stage table) at each burst cost
  more than the batch it carried;
* the alarm lane never waits in that queue: it has threads of its own (as many as its connections, not the thread
  pool's 40 tokens every sync route shares) and connections of its own (``Registry.urgent_engine``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")

SHARED_RESERVE = 2
"""Connections of the process's main pool that bulk ingest never takes: the other routes' (heartbeats, commands...)."""


class LaneGate:
    def __init__(self, connections: int, alarm_connections: int, *, bulk_limit: int | None = None) -> None:
        """``connections``: the connections the process's main database pool keeps open (its pool size);
        ``alarm_connections``: the alarm lane's pool (``Registry.urgent_engine``), one thread each; ``bulk_limit``:
        fewer bulk batches at once than the pool allows (``Settings.bulk_ingest_limit``)."""
        self.bulk_limit = max(1, min(connections - SHARED_RESERVE, bulk_limit or connections))
        # A limiter is waited for before a thread is taken (FIFO): a queued batch holds neither thread nor connection.
        self._bulk_threads = CapacityLimiter(self.bulk_limit)
        self._alarm_threads = CapacityLimiter(alarm_connections)

    async def run(self, lane: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread: at once for the alarm lane, after its turn for a bulk lane."""
        if lane == "alarm":
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._alarm_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._bulk_threads)
