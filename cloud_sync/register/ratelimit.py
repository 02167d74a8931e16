"""Token buckets for what an attacker repeats: authentication failures and enrollment attempts, per source address
and per household. In memory, per process, with a bounded number of keys (least recently used go first)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cloud_sync.register.errors import RateLimited


@dataclass(frozen=True)
class Rate:
    burst: int
    """How many may come at once."""
    per_s: float
    """How fast the allowance comes back."""


class Limiter:
    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._clock = clock

    def _level(self, key: tuple[str, str], rate: Rate, now: float) -> float:
        level, at = self._buckets.get(key, (float(rate.burst), now))
        return min(float(rate.burst), level + (now - at) * rate.per_s)

    def check(self, key: tuple[str, str], rate: Rate, what: str) -> None:
        """Raise :class:`RateLimited` if ``key`` has no allowance left (does not spend any)."""
        with self._lock:
            now = self._clock()
            level = self._level(key, rate, now)
        if level < 1:
            wait = math.ceil((1 - level) / rate.per_s)
            raise RateLimited(f"too many {what}; try again in {wait} s", retry_after=wait)

    def spend(self, key: tuple[str, str], rate: Rate) -> None:
        with self._lock:
            now = self._clock()
            self._buckets[key] = (self._level(key, rate, now) - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
