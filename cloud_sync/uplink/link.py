"""What every loop of the uplink shares: the store, the settings, the register client factory, the per-lane status,
and the retry policy (the hub's one backoff, driven by tenacity, never sooner than the register's ``Retry-After``,
cut short by ``kotihub sync --now``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from cloud_sync import protocol as p
from cloud_sync.uplink.alarmroute import AlarmClient, AlarmRoute
from cloud_sync.uplink.batchsize import GROW_WITHIN, BatchSize
from cloud_sync.uplink.client import HubIdentity, RegisterClient, RegisterUnavailable, ReplyStats
from gateway.backoff import Backoff, BackoffPolicy
from gateway.config import UplinkSection
from gateway.model import Lane
from gateway.store import Store

log = logging.getLogger(__name__)

IDLE_POLL_S = 30.0


@dataclass
class LaneStatus:
    last_success: float | None = None
    last_error: str | None = None
    next_retry: float | None = None
    sent: int = 0
    dead_lettered: int = 0
    cursor: int = 0
    latency_ms: float | None = None
    lingering: bool = False
    """New items wait for company (``readings_linger_s``, :func:`cloud_sync.uplink.lanes.linger`)."""
    draining: bool = False
    """The lane is sending what it holds."""


@dataclass
class Link:
    """The state and policy the loops share; :class:`cloud_sync.uplink.service.Uplink` is one, with its loops."""

    store: Store
    config: UplinkSection
    identity: HubIdentity
    rng: random.Random = field(default_factory=random.Random)
    """The jitter's source; seeded in tests."""
    on_server_time: Callable[[float], None] | None = None
    """Told the register's clock after each acknowledged batch (retention trusts the hub's clock once they agree)."""
    status: dict[str, LaneStatus] = field(default_factory=lambda: {lane.value: LaneStatus() for lane in Lane})
    replies: ReplyStats = field(default_factory=ReplyStats)
    kicks: int = 0
    """How many times :meth:`kick` ran; a linger that sees it change stops waiting."""
    lingering: bool = True
    """Off once the uplink is stopping (:meth:`cloud_sync.uplink.service.Uplink.flush`): nothing waits for more."""
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    """Set each time a lane's cursor moves (the register acknowledged a batch), a send fails, or a drain ends."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    watched_until: float = 0.0
    """Monotonic time until which a member has the household's app open, as the register last said (the command
    long-poll's :data:`~cloud_sync.protocol.LIVE_HEADER`); readings linger ``readings_live_linger_s`` meanwhile."""
    wait_max: float = p.LEGACY_COMMAND_WAIT_S
    """The longest command long-poll the register accepts, as it last said (:data:`~cloud_sync.protocol.
    WAIT_MAX_HEADER`); until it says, what every register accepts."""
    alarm: AlarmClient | None = None
    """The alarm lane's client, once its loop made it (for ``kotihub status``)."""
    _sizes: dict[str, BatchSize] = field(default_factory=dict)
    _bulk: RegisterClient | None = None
    _alarm_route: AlarmRoute | None = None

    @property
    def alarm_route(self) -> AlarmRoute:
        """Where alarms go: learned from the main URL's replies (:mod:`cloud_sync.uplink.alarmroute`)."""
        if self._alarm_route is None:
            self._alarm_route = AlarmRoute(self.config.register_url)
        return self._alarm_route

    def watched(self) -> bool:
        return time.monotonic() < self.watched_until

    def heard_watched(self, header: str | None) -> None:
        """The register's word on the app (the header's value; None: nobody has it open). Going live sends what
        has lingered longer than the live linger now, rather than at the end of its own."""
        seconds = _live_seconds(header)
        was = self.watched()
        self.watched_until = time.monotonic() + seconds if seconds else 0.0
        if seconds and not was:
            log.info("the household's app is open: readings go within %.0f s", self.config.readings_live_linger_s)
            for lane in Lane:  # a lingering lane looks at its deadline again (cloud_sync.uplink.lanes.linger)
                self.store.lane_waiter(lane).set()

    def command_wait(self) -> float:
        """The next command long-poll's ``wait``: ``uplink.command_poll_wait``, as far as the register accepts."""
        return min(self.config.command_poll_wait, self.wait_max)

    def heard_wait_max(self, header: str | None) -> None:
        """The register's longest long-poll (the header's value; None: an older register, which takes 30 s)."""
        try:
            seconds = float(header) if header is not None else p.LEGACY_COMMAND_WAIT_S
        except ValueError:
            seconds = p.LEGACY_COMMAND_WAIT_S
        # A value out of reason (not a number, negative, hours) is not the register's word: keep what works anywhere.
        self.wait_max = seconds if 0 <= seconds <= 3600 else p.LEGACY_COMMAND_WAIT_S

    def linger_s(self) -> float:
        """How long new readings wait for company now."""
        return self.config.readings_live_linger_s if self.watched() else self.config.readings_linger_s

    @property
    def policy(self) -> BackoffPolicy:
        return BackoffPolicy(initial=self.config.backoff_initial, maximum=self.config.backoff_max)

    def backoff(self) -> Backoff:
        return self.policy.backoff(rng=self.rng)

    def batch_size(self, lane: str) -> BatchSize:
        """The lane's batch bounds, kept across drains. The alarm lane's never grow: an alarm goes as it comes."""
        size = self._sizes.get(lane)
        if size is None:
            c = self.config
            grows_to = c.batch_items if lane == Lane.ALARM.value else c.batch_items_max
            size = self._sizes[lane] = BatchSize(
                c.batch_items, grows_to, c.batch_bytes, grow_within_s=GROW_WITHIN * c.read_timeout
            )
        return size

    def client(self, *, shared: bool = False) -> RegisterClient:
        """A client of its own, or (``shared``) the one connection the bulk lanes take turns on."""
        if shared and self._bulk is not None:
            return self._bulk
        client = self._client(self.config.register_url, shared=shared)
        if shared:
            self._bulk = client
        return client

    def _client(
        self,
        url: str,
        *,
        shared: bool = False,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> RegisterClient:
        main = url.rstrip("/") == self.config.register_url.rstrip("/")
        return RegisterClient(
            url,
            self.identity,
            connect_timeout=min(self.config.connect_timeout, connect_timeout or self.config.connect_timeout),
            read_timeout=min(self.config.read_timeout, read_timeout or self.config.read_timeout),
            replies=self.replies,
            shared=shared,
            # Only the main URL's replies say where the alarm listener is (the listener's own say nothing).
            on_reply=self.alarm_route.announced if main else None,
        )

    def alarm_client(self) -> AlarmClient:
        """The alarm lane's client: the alarm listener's connection when one is announced, else one of its own to
        the main URL; never the bulk lanes' connection."""
        self.alarm = AlarmClient(self.alarm_route, self._client)
        return self.alarm

    def release(self, client: RegisterClient | AlarmClient) -> None:
        """A loop is done with its client: closed, unless it is the shared one (closed when the uplink stops)."""
        if client is not self._bulk:
            client.close()

    def close_shared(self) -> None:
        if self._bulk is not None:
            self._bulk.close()
            self._bulk = None

    def retrying(self, lane: str) -> AsyncRetrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            status = self.status[lane]
            status.last_error = str(exc)[:300]
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            status.next_retry = time.time() + sleep
            self.progress.set()  # a stop's flush does not wait for a lane that is failing
            log.warning("sync of %s failed (%s); retrying in %.1f s", lane, exc, sleep)

        return AsyncRetrying(
            retry=retry_if_exception_type(RegisterUnavailable),
            wait=_wait_with_retry_after(self.backoff()),
            before_sleep=before_sleep,
            sleep=self.pause,
            reraise=True,
        )

    async def pause(self, seconds: float) -> None:
        """A backoff pause that :meth:`kick` cuts short."""
        await wait(self._wake, seconds)

    def kick(self) -> None:
        """``kotihub sync --now``: end every backoff pause and idle wait, so each lane retries at once."""
        # Releases whoever waits on the current event; later pauses wait on a fresh one.
        self.kicks += 1
        self._wake.set()
        self._wake = asyncio.Event()
        for lane in Lane:
            self.store.lane_waiter(lane).set()


def _wait_with_retry_after(backoff: Backoff) -> Callable[[RetryCallState], float]:
    """The backoff policy's delay, but never sooner than the register's Retry-After."""

    def wait(state: RetryCallState) -> float:
        delay = backoff.delay(state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RegisterUnavailable) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    return wait


async def wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass. ``asyncio.timeout``, not ``wait_for``: on Python 3.11 the latter
    drops a cancel that lands as the event is set, and a loop that misses its cancel would hold the daemon's stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _live_seconds(header: str | None) -> float:
    """The header's seconds, or 0 for none and for anything that is not a number in (0, MAX_LIVE_S]."""
    try:
        seconds = float(header) if header else 0.0
    except ValueError:
        return 0.0
    return seconds if 0 < seconds <= p.MAX_LIVE_S else 0.0
