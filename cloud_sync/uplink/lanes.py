"""The item lanes (alarm, events, readings, diagnostics): each drains its outbox to the register in batches, in
order; a lane's cursor moves only once the register acknowledged a durable commit. A batch the register refuses
for good is split until the refused items are isolated; those become dead letters with the register's reason.

The store commits readings about once a second, and each commit woke the readings lane: at a home's rate (~60
sensors every 30 s) that was a request a second of two readings each. The lingering lanes (:data:`LINGERING_LANES`)
therefore let new items wait up to ``readings_linger_s`` for more to join them (:func:`linger`), unless a full batch
is there first, ``kotihub sync --now`` kicks, or the uplink stops. What waits is already committed in the store, so a
SIGKILL loses nothing: the next start sends it. Alarms never wait, nor do events (a door opening is a few a day, and
people watch for it in the app). While idle, the alarm lane pings its connection to keep it open
(:func:`keep_warm`; cloud_sync.uplink.alarmroute says why)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from cloud_sync import protocol as p
from cloud_sync.uplink.alarmroute import AlarmClient
from cloud_sync.uplink.client import RegisterClient, RegisterRejected, RegisterUnavailable, in_thread
from cloud_sync.uplink.link import IDLE_POLL_S, Link, wait
from gateway.errors import PermanentError, TransientError
from gateway.model import Lane
from gateway.store import OutboxItem

log = logging.getLogger(__name__)

ITEM_LANES = (Lane.ALARM, Lane.EVENTS, Lane.READINGS, Lane.DIAGNOSTICS)
LINGERING_LANES = frozenset({Lane.READINGS.value, Lane.DIAGNOSTICS.value})
_size_encoder = msgspec.msgpack.Encoder()


async def lane_loop(link: Link, hub_id: str, lane: str) -> None:
    # The alarm lane never queues behind bulk: its own connection, to the alarm listener when the register has one.
    client = link.alarm_client() if lane == Lane.ALARM.value else link.client(shared=True)
    status = link.status[lane]
    status.cursor = link.store.synced_seq(lane)
    waiter = link.store.lane_waiter(lane)
    backoff = link.backoff()
    try:
        while True:
            waiter.clear()
            status.draining = True
            try:
                await _drain(link, client, hub_id, lane)
                backoff.reset()
            except (TransientError, PermanentError, OSError) as exc:
                # Anything the retry loop did not absorb (a short acknowledgement, a broken spool file, a store
                # error): the lane waits and starts again from its cursor; nothing is lost, at worst resent.
                status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("sync of %s interrupted: %s", lane, status.last_error)
                await link.pause(backoff.next())
                continue
            finally:
                status.draining = False
                link.progress.set()
            if isinstance(client, AlarmClient):
                await keep_warm(link, client, waiter)
            else:
                await wait(waiter, IDLE_POLL_S)
            if lane in LINGERING_LANES:
                await linger(link, lane, waiter)
    finally:
        link.release(client)


async def keep_warm(link: Link, client: AlarmClient, waiter: asyncio.Event) -> None:
    """The alarm lane's idle wait: until an alarm is committed (or ``IDLE_POLL_S``), pinging the alarm connection
    when due (``alarm_keepalive_s``). An alarm committed while a ping is on the wire does not wait for it: the ping
    is left to finish in its thread, and the alarm takes another connection."""
    until = time.monotonic() + IDLE_POLL_S
    while not waiter.is_set():
        now = time.monotonic()
        due = client.ping_due(link.config.alarm_keepalive_s)
        if due is not None and due <= now:
            ping = asyncio.ensure_future(in_thread(client.ping))
            woken = asyncio.ensure_future(waiter.wait())
            try:
                await asyncio.wait({ping, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (ping, woken):
                    task.cancel()
                await asyncio.gather(ping, woken, return_exceptions=True)
            if ping.done() and not ping.cancelled() and (error := ping.exception()) is not None:
                raise error  # a bug: ping() handles every failure it expects
            continue
        wake = until if due is None else min(until, due)
        if wake <= now:
            return
        await wait(waiter, wake - now)


def backlog(link: Link, lane: str) -> int:
    """Items committed on ``lane`` beyond what the register acknowledged (two dict reads; no query)."""
    return link.store.newest_seq(lane) - link.status[lane].cursor


async def linger(link: Link, lane: str, waiter: asyncio.Event) -> None:
    """Returns when the items that woke the lane should go: ``readings_linger_s`` after they did (the shorter
    ``readings_live_linger_s`` while a member has the app open, :meth:`Link.linger_s`), or as soon as a full batch
    (``batch_items``) is waiting, a kick (``kotihub sync --now``) comes, or the uplink stops."""
    status = link.status[lane]
    woke = time.monotonic()
    kicks = link.kicks
    try:
        while link.lingering and link.kicks == kicks and 0 < backlog(link, lane) < link.config.batch_items:
            remaining = woke + link.linger_s() - time.monotonic()
            if remaining <= 0:
                return
            status.lingering = True
            waiter.clear()  # woken by each commit, to see whether the batch is full
            await wait(waiter, remaining)
    finally:
        status.lingering = False


async def _drain(link: Link, client: RegisterClient | AlarmClient, hub_id: str, lane: str) -> None:
    """Sends batches until the lane is empty, reading the next batch from the store while one is on the wire. A bulk
    lane's batches grow while the register acknowledges full ones in time (:mod:`cloud_sync.uplink.batchsize`); the
    page read meanwhile has the size from before that ack."""
    status = link.status[lane]
    size = link.batch_size(lane)
    limit = size.items
    items = await link.store.pending(lane, after=status.cursor, limit=limit)
    while items:
        asked, limit = limit, size.items
        prefetch = asyncio.create_task(link.store.pending(lane, after=items[-1].seq, limit=limit))
        started = time.monotonic()
        try:
            await deliver(link, client, hub_id, lane, items)
        except BaseException:
            size.failed()
            prefetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await prefetch
            raise
        size.sent(full=len(items) >= asked, took_s=time.monotonic() - started)
        items = await prefetch


async def deliver(
    link: Link, client: RegisterClient | AlarmClient, hub_id: str, lane: str, items: list[OutboxItem]
) -> None:
    """Sends ``items`` until acknowledged; isolates and dead-letters what the register refuses for good."""
    status = link.status[lane]
    size = link.batch_size(lane)
    # Bounded by the size now, not the one the page was read at: after a failed attempt, a large page read
    # meanwhile goes in batches of the smaller size.
    chunks = await asyncio.to_thread(split_by_bytes, items, size.bytes, size.items)
    for chunk in chunks:
        started = time.monotonic()
        try:
            async for attempt in link.retrying(lane):
                with attempt:
                    ack = await in_thread(client.ingest, hub_id, lane, chunk)
                if attempt.retry_state.attempt_number > 1:
                    size.failed()
        except RegisterRejected as exc:
            if len(chunk) > 1:
                half = len(chunk) // 2
                await deliver(link, client, hub_id, lane, chunk[:half])
                await deliver(link, client, hub_id, lane, chunk[half:])
                continue
            await link.store.dead_letter(lane, chunk[0].seq, str(exc))
            status.dead_lettered += 1
            log.error("the register refused item %d of %s for good; kept as a dead letter", chunk[0].seq, lane)
            ack = p.IngestAck(lane=lane, acked_seq=chunk[0].seq, stored=0, duplicates=0)
        if ack.acked_seq < chunk[-1].seq:
            raise RegisterUnavailable(f"register acknowledged only up to {ack.acked_seq} of {chunk[-1].seq}")
        status.cursor = max(status.cursor, ack.acked_seq)
        # The durable cursor follows at the next group commit; if it is lost in a crash the batch is resent and
        # the register ignores it as a duplicate.
        link.store.mark_synced(lane, status.cursor)
        link.progress.set()
        status.sent += len(chunk)
        status.last_success = time.time()
        status.last_error = status.next_retry = None
        status.latency_ms = (time.monotonic() - started) * 1000
        if link.on_server_time is not None and client.server_time is not None:
            at, seen = client.server_time
            link.on_server_time(at + (time.monotonic() - seen))


def split_by_bytes(items: list[OutboxItem], limit: int, most: int | None = None) -> list[list[OutboxItem]]:
    """Batches under ``limit`` bytes of (uncompressed) body, and of at most ``most`` items; one oversized item still
    goes alone."""
    out: list[list[OutboxItem]] = []
    current: list[OutboxItem] = []
    size = 0
    most = most or len(items)
    for item in items:
        estimate = 16 + len(_size_encoder.encode(item.body))
        if current and (size + estimate > limit or len(current) >= most):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += estimate
    if current:
        out.append(current)
    return out
