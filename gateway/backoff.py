"""One retry policy for everything that reconnects or restarts: drivers, supervised tasks, the recorder, the uplink.

Delays grow ``initial * 2**n`` up to ``maximum``; each is drawn from the upper half of that step ("equal jitter"),
so a fleet of hubs that lost the same broker or register does not come back in lock-step, yet nothing ever retries
faster than half the current step. A task that ran for ``stable_after`` seconds before failing starts again from
``initial``: that is a new failure, not a crash loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Annotated

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class BackoffPolicy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The ``[supervision]`` backoff, or any other section's: how fast to retry and when to forget past failures."""

    initial: Positive = 1.0
    maximum: Positive = 300.0
    stable_after: Positive = 60.0

    def __post_init__(self) -> None:
        if self.initial > self.maximum:
            raise ValueError("backoff needs initial <= maximum")

    def backoff(self, *, rng: random.Random | None = None) -> Backoff:
        return Backoff(self.initial, self.maximum, uniform=rng.uniform if rng is not None else None)


class Backoff:
    """Capped exponential backoff with equal jitter; :meth:`next` gives the next delay, :meth:`reset` starts over."""

    def __init__(self, minimum: float, maximum: float, *, uniform: Callable[[float, float], float] | None = None):
        if not 0 < minimum <= maximum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._uniform = uniform or random.uniform

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0-based), jittered; does not advance."""
        step = min(self.maximum, self.minimum * 2.0 ** min(max(attempt, 0), 62))
        return step / 2.0 + self._uniform(0.0, step / 2.0)

    def next(self) -> float:
        self.attempt += 1
        return self.delay(self.attempt - 1)

    def reset(self) -> None:
        self.attempt = 0
