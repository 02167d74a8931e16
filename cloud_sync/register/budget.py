"""One memory budget for the request bodies the register holds at once (buffered and inflated), across all
requests: each request caps its own body, and this caps their sum, so a hundred concurrent decompression bombs
cost at most the budget instead of a hundred times the per-request limit."""

from __future__ import annotations

import threading
from types import TracebackType

from cloud_sync.register.errors import Busy


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()

    def lease(self) -> Lease:
        return Lease(self)

    def _take(self, n: int) -> None:
        with self._lock:
            if self.used + n > self.limit:
                self.refused += 1
                raise Busy(
                    f"the register is holding its limit of request bodies ({self.limit} bytes); try again shortly",
                    retry_after=1,
                )
            self.used += n

    def _give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Lease:
    """What one request holds of the budget; everything is given back when the ``with`` block ends."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes or raise :class:`Busy` (503 with ``Retry-After``)."""
        self.budget._take(n)
        self.held += n

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.budget._give(self.held)
        self.held = 0
