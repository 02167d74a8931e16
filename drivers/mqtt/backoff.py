"""Capped exponential backoff with jitter for reconnects."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays grow ``minimum * 2**n`` up to ``maximum``; each is drawn from the upper half of that ("equal
    jitter"), so a fleet of hubs that lost the same broker does not come back in lock-step, yet never retries
    faster than half the current step."""

    def __init__(self, minimum: float, maximum: float, *, uniform: Callable[[float, float], float] | None = None):
        if not 0 < minimum <= maximum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._uniform = uniform or random.uniform

    def next(self) -> float:
        step = min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        return step / 2.0 + self._uniform(0.0, step / 2.0)

    def reset(self) -> None:
        self.attempt = 0
