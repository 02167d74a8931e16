"""Supervision: every long-lived task of the hub runs under one policy, so one failing part restarts alone.

A supervised task that raises is logged, counted in ``kotihub status`` and restarted after the policy's backoff; one
that reports :class:`Progress` and stays silent past its deadline is cancelled as *hung* and restarted the same way.
Drivers, the alarm path and the other tasks keep running meanwhile. Only cancellation (the daemon stopping) ends a
supervised task for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.backoff import BackoffPolicy
from gateway.errors import TransientError

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 5.0
"""How long a hung task gets to end after it is cancelled before it is abandoned (and logged)."""


class Hung(TransientError):
    """A supervised task reported no progress within its deadline."""


class Progress:
    """A heartbeat a task beats whenever it gets something done; ``deadline`` None means it is not watched."""

    def __init__(self, deadline: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self._clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self._clock()

    def age(self) -> float:
        return self._clock() - self.last


@dataclass(slots=True)
class TaskHealth:
    """What ``kotihub status`` shows of one supervised task."""

    name: str
    state: str = "starting"
    restarts: int = 0
    hangs: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "hangs": self.hangs,
            "last_error": self.last_error,
            "since": self.since,
        }


class Supervisor:
    """Runs tasks forever with :meth:`run`; ``health`` holds each one's state for status."""

    def __init__(self, policy: BackoffPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.health: dict[str, TaskHealth] = {}
        self._rng = rng

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: h.view() for name, h in self.health.items()}

    async def run(
        self,
        name: str,
        factory: Callable[[], Awaitable[None]],
        *,
        progress: Progress | None = None,
        health: TaskHealth | None = None,
    ) -> None:
        """Runs ``factory()`` until cancelled: restarted with backoff when it raises, returns or hangs. Its health
        goes to ``health`` if given (drivers keep their own), else into this supervisor's table."""
        if health is None:
            health = self.health.setdefault(name, TaskHealth(name))
        backoff = self.policy.backoff(rng=self._rng)
        while True:
            health.state, health.since = "running", time.time()
            started = time.monotonic()
            try:
                await self._once(name, factory, progress)
                health.last_error = "ended by itself"
                log.error("%s ended by itself; restarting it", name)
            except asyncio.CancelledError:
                health.state = "stopped"
                raise
            except Hung as exc:
                health.hangs += 1
                health.last_error = str(exc)
                log.error("%s; cancelled, restarting it", exc)
            except TransientError as exc:  # expected trouble (a network, a device): no traceback
                health.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("%s failed (%s); restarting it with backoff", name, health.last_error)
            except Exception as exc:  # a bug in one part must not stop the hub
                health.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("%s crashed; restarting it with backoff", name)
            if time.monotonic() - started >= self.policy.stable_after:
                backoff.reset()  # it ran for a while: a new failure, not a crash loop
            health.state, health.restarts = "restarting", health.restarts + 1
            # The backoff pause itself, not synchronisation.
            await asyncio.sleep(backoff.next())

    async def _once(self, name: str, factory: Callable[[], Awaitable[None]], progress: Progress | None) -> None:
        if progress is None or progress.deadline is None:
            await factory()
            return
        deadline = progress.deadline
        progress.beat()
        task = asyncio.ensure_future(factory())
        try:
            while True:
                remaining = deadline - progress.age()
                if remaining <= 0:
                    raise Hung(f"{name} made no progress for {progress.age():.0f} s (deadline {deadline:.0f} s)")
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    task.result()
                    return
        finally:
            if not task.done():
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
                if not done:
                    log.error("%s did not end within %.0f s of being cancelled; abandoned", name, CANCEL_GRACE_S)
                else:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        task.result()
