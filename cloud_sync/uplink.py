"""The hub's uplink: every lane of the outbox to the register, exactly once in effect, in order per lane.

Each lane has its own task and its own HTTPS connection, so a smoke alarm goes out at once even while a week of
readings drains. A batch is sent, the register commits it and acknowledges the highest sequence it now holds, and
only then does the lane's cursor move. A reply lost after the register committed means a resend, which the register
recognises by ``(hub, lane, seq)``. Retries use the hub's one backoff policy (:mod:`gateway.backoff`, driven by
tenacity), honour ``Retry-After``, and always have connect and read timeouts. A reply of the wrong shape, type or
content type is a :class:`RegisterBadReply`: counted, logged and retried like an outage, never a crash. A batch the
register refuses for good is split until the refused items are isolated; those go to the dead-letter table with the
register's reason.

Every loop runs under the daemon's :class:`~gateway.supervisor.Supervisor`, so a loop that fails for a reason
nobody foresaw restarts alone. Blocking HTTP runs in threads of its own (:func:`in_thread`), never the shared
default executor: a 25 s command long-poll neither delays shutdown nor starves the store's reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import msgspec
import requests
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from cloud_sync import heartbeat
from cloud_sync import protocol as p
from cloud_sync.enroll import renewal_loop
from gateway.backoff import Backoff, BackoffPolicy
from gateway.config import UplinkSection
from gateway.errors import PermanentError, TransientError
from gateway.model import Lane
from gateway.store import OutboxItem, Store, schema
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)

IDLE_POLL_S = 30.0
DEVICES_INTERVAL_S = 60.0
CLIP_CHUNK = 1024 * 1024
ITEM_LANES = (Lane.ALARM, Lane.EVENTS, Lane.READINGS, Lane.DIAGNOSTICS)


class RegisterUnavailable(TransientError):
    """Network trouble, a timeout, 5xx or 429: try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegisterBadReply(RegisterUnavailable):
    """A 2xx reply that is not what the protocol promises (HTML, a truncated body, a wrong type or shape): a
    register bug, a proxy or version skew. Retried with backoff like an outage; counted in ``kotihub status``."""


class ClipNotReady(RegisterUnavailable):
    """The clip is indexed but not yet renamed into the spool (a moment's window): try again shortly."""


class ClipGone(PermanentError):
    """The clip's file and index are gone (erased or expired on the hub while it uploaded)."""


class RegisterRejected(PermanentError):
    """The register refused the request itself (4xx): resending the same bytes cannot help. A clip upload's 409
    carries the ``offset`` the register holds, to resume from."""

    def __init__(self, message: str, *, status: int, offset: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.offset = offset


@dataclass(frozen=True)
class HubIdentity:
    """The files ``kotihub provision`` wrote: the hub's key and certificate, and the register's CA."""

    state_dir: Path

    @property
    def cert(self) -> Path:
        return self.state_dir / "hub.crt"

    @property
    def key(self) -> Path:
        return self.state_dir / "hub.key"

    @property
    def ca(self) -> Path:
        return self.state_dir / "register-ca.crt"

    @property
    def provisioned(self) -> bool:
        return self.cert.exists() and self.key.exists() and self.ca.exists()

    def hub_id(self) -> str:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@dataclass
class ReplyStats:
    """Replies of the wrong shape, type or content type, across all the uplink's connections."""

    bad_replies: int = 0
    last_bad_reply: str | None = None
    last_bad_at: float | None = None

    def bad(self, what: str) -> None:
        self.bad_replies += 1
        self.last_bad_reply = what[:300]
        self.last_bad_at = time.time()


@dataclass
class LaneStatus:
    last_success: float | None = None
    last_error: str | None = None
    next_retry: float | None = None
    sent: int = 0
    dead_lettered: int = 0
    cursor: int = 0
    latency_ms: float | None = None


def _server_time(headers: Any) -> tuple[float, float] | None:
    value = headers.get("Date") if headers is not None else None
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp(), time.monotonic()
    except (TypeError, ValueError):
        return None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


P = ParamSpec("P")
R = TypeVar("R")


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Runs blocking ``fn`` in a daemon thread of its own and awaits it. Cancelling the await abandons the thread
    (its socket has a timeout, so it ends soon after); a daemon thread never holds up the process's exit, unlike
    the default executor's, which ``asyncio.run`` and the interpreter both wait for."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile: nobody wants the answer
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting task, which decides
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: the daemon is exiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="kotihub-uplink-http", daemon=True).start()
    return await future


_JSON_TYPES = ("application/json",)


class RegisterClient:
    """Blocking HTTPS calls to the register with the hub's certificate; one instance (one connection) per lane."""

    def __init__(
        self,
        base_url: str,
        identity: HubIdentity,
        *,
        connect_timeout: float,
        read_timeout: float,
        replies: ReplyStats | None = None,
    ) -> None:
        self.replies = replies or ReplyStats()
        self.base = base_url.rstrip("/")
        self.identity = identity
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or CA bundles from the environment: only the register's CA
        self.session.cert = (str(identity.cert), str(identity.key))
        self._cert_stamp = self._stamp()
        self.session.verify = str(identity.ca)
        self.timeout = (connect_timeout, read_timeout)
        self.server_time: tuple[float, float] | None = None
        """The register's clock from its last ``Date`` header, with our monotonic time when it arrived."""

    def close(self) -> None:
        self.session.close()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.identity.cert.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def request(self, method: str, path: str, *, read_timeout: float | None = None, **kw: Any) -> requests.Response:
        timeout = self.timeout if read_timeout is None else (self.timeout[0], read_timeout)
        stamp = self._stamp()
        if stamp != self._cert_stamp:
            # The certificate was renewed: pooled connections still speak with the old (soon retired) one.
            self._cert_stamp = stamp
            self.session.close()
        try:
            resp = self.session.request(method, self.base + path, timeout=timeout, **kw)
        except requests.RequestException as exc:
            raise RegisterUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.server_time = _server_time(resp.headers) or self.server_time
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RegisterUnavailable(f"register answered {resp.status_code}", retry_after=_retry_after(resp.headers))
        if resp.status_code in (401, 403):
            # Our certificate was refused (revoked, expired or retired): keep buffering and keep trying; a person
            # must act. The next attempt connects afresh, with whatever certificate is on disk by then.
            self.session.close()
            raise RegisterUnavailable(f"register refused the hub's certificate ({resp.status_code}): {_detail(resp)}")
        if resp.status_code == 408:
            raise RegisterUnavailable("register timed out reading the request")
        if resp.status_code >= 400:
            offset = None
            if resp.status_code == 409:
                with contextlib.suppress(ValueError, AttributeError):
                    offset = resp.json().get("offset")
            raise RegisterRejected(f"{resp.status_code}: {_detail(resp)}", status=resp.status_code, offset=offset)
        return resp

    def decode(self, resp: requests.Response, typ: type[R]) -> R:
        """The reply's JSON body as ``typ``, or :class:`RegisterBadReply` (counted) if it is anything else."""
        what = f"{resp.request.method} {_endpoint(resp.request.path_url)}" if resp.request else "reply"
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in _JSON_TYPES:
            raise self.bad_reply(f"{what}: content type {ctype or 'missing'!r}, not JSON")
        try:
            return msgspec.json.decode(resp.content, type=typ)
        except msgspec.ValidationError as exc:
            raise self.bad_reply(f"{what}: unexpected reply ({exc})") from None
        except msgspec.DecodeError as exc:
            raise self.bad_reply(f"{what}: malformed JSON ({exc})") from None

    def bad_reply(self, what: str) -> RegisterBadReply:
        """Counts a reply that breaks the protocol and returns the error to raise."""
        self.replies.bad(what)
        return RegisterBadReply(f"bad reply from the register: {what}")

    def ingest(self, hub_id: str, lane: str, items: list[OutboxItem]) -> p.IngestAck:
        batch = p.IngestBatch(
            hub_id=hub_id, lane=cast(p.LaneName, lane), items=[p.Item(i.seq, i.ts, i.body) for i in items]
        )
        resp = self.request(
            "POST",
            f"/v1/ingest/{lane}",
            data=p.encode_batch(batch),
            headers={"Content-Type": p.MSGPACK_CONTENT_TYPE, "Content-Encoding": p.ZSTD_ENCODING},
        )
        return self.decode(resp, p.IngestAck)


def _endpoint(path_url: str) -> str:
    """``/v1/ingest/alarm`` as it is, ``/v1/clips/{id}`` without the id: a clip id in a log line would say when a
    camera recorded."""
    parts = path_url.split("?")[0].split("/")
    return "/".join([*parts[:3], "{id}"]) if len(parts) > 3 and parts[2] == "clips" else "/".join(parts)


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("detail") or body.get("error") or body)[:300]
    except ValueError:
        return resp.text[:300]


def _wait_with_retry_after(backoff: Backoff) -> Callable[[RetryCallState], float]:
    """The backoff policy's delay, but never sooner than the register's Retry-After."""

    def wait(state: RetryCallState) -> float:
        delay = backoff.delay(state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RegisterUnavailable) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    return wait


CommandHandler = Callable[[p.Command], Awaitable[dict[str, Any]]]


class Erasures(Protocol):
    """Erasures asked on the hub, waiting to be carried to the register (``gateway.privacy.ErasureOutbox``)."""

    waiter: asyncio.Event

    async def pending(self) -> list[dict[str, Any]]: ...

    async def carried(self, receipt_id: str, register_receipt: dict[str, Any]) -> None: ...

    async def refused(self, receipt_id: str, reason: str) -> None: ...


@dataclass
class Uplink:
    """Runs until cancelled: one task per lane, the clip uploader and the command poller."""

    store: Store
    config: UplinkSection
    identity: HubIdentity
    command_handlers: dict[str, CommandHandler] = field(default_factory=dict)
    spool_dir: Path | None = None
    erasures: Erasures | None = None
    """Erasures asked on the hub: each is posted to ``/v1/erasures`` until the register has carried it out."""
    devices_source: Callable[[], list[dict[str, str]]] | None = None
    """The hub's device registry as register ``DeviceRecord`` dicts; sent whenever it changes."""
    on_server_time: Callable[[float], None] | None = None
    """Told the register's clock after each acknowledged batch (retention trusts the hub's clock once they agree)."""
    supervisor: Supervisor | None = None
    """Runs the uplink's loops; None makes one from the uplink's own backoff settings (tests, tools)."""
    rng: random.Random = field(default_factory=random.Random)
    """The jitter's source; seeded in tests."""
    health_source: Callable[[], Awaitable[p.Heartbeat | None]] | None = None
    """Collects the health heartbeat sent every ``heartbeat_interval`` (cloud_sync.heartbeat)."""
    status: dict[str, LaneStatus] = field(default_factory=lambda: {lane.value: LaneStatus() for lane in Lane})
    replies: ReplyStats = field(default_factory=ReplyStats)
    hub_id: str = ""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def policy(self) -> BackoffPolicy:
        return BackoffPolicy(initial=self.config.backoff_initial, maximum=self.config.backoff_max)

    def _backoff(self) -> Backoff:
        return self.policy.backoff(rng=self.rng)

    def client(self) -> RegisterClient:
        """A connection of its own, for a command that talks to the register (the caller closes it)."""
        return self._client()

    def _client(self) -> RegisterClient:
        return RegisterClient(
            self.config.register_url,
            self.identity,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            replies=self.replies,
        )

    def _retrying(self, lane: str) -> AsyncRetrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            status = self.status[lane]
            status.last_error = str(exc)[:300]
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            status.next_retry = time.time() + sleep
            log.warning("sync of %s failed (%s); retrying in %.1f s", lane, exc, sleep)

        return AsyncRetrying(
            retry=retry_if_exception_type(RegisterUnavailable),
            wait=_wait_with_retry_after(self._backoff()),
            before_sleep=before_sleep,
            sleep=self._pause,
            reraise=True,
        )

    async def _pause(self, seconds: float) -> None:
        """A backoff pause that :meth:`kick` cuts short."""
        await _wait(self._wake, seconds)

    def kick(self) -> None:
        """``kotihub sync --now``: end every backoff pause and idle wait, so each lane retries at once."""
        # Releases whoever waits on the current event; later pauses wait on a fresh one.
        self._wake.set()
        self._wake = asyncio.Event()
        for lane in Lane:
            self.store.lane_waiter(lane).set()

    async def run(self) -> None:
        """Runs every loop, each supervised on its own, until cancelled."""
        hub_id = self.hub_id = await asyncio.to_thread(self.identity.hub_id)
        supervisor = self.supervisor = self.supervisor or Supervisor(self.policy, rng=self.rng)
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            **{f"uplink {lane.value}": _bind(self._lane_loop, hub_id, lane.value) for lane in ITEM_LANES},
            "uplink clips": _bind(self._clip_loop, hub_id),
            "uplink commands": self._command_loop,
        }
        if self.devices_source is not None:
            loops["uplink devices"] = _bind(self._devices_loop, self.devices_source)
        loops["uplink certificate renewal"] = _bind(renewal_loop, self.config.register_url, self.identity.state_dir)
        if self.erasures is not None:
            loops["uplink erasures"] = _bind(self._erasure_loop, self.erasures)
        if (health := self.health_source) is not None:
            # Its HTTP in the uplink's own daemon threads too, so a heartbeat in flight never holds up a stop.
            interval = self.config.heartbeat_interval
            loops["uplink heartbeat"] = lambda: heartbeat.send_forever(self._client, health, interval, call=in_thread)
        async with asyncio.TaskGroup() as tg:
            for name, loop in loops.items():
                tg.create_task(supervisor.run(name, loop), name=name)

    # ---- item lanes ----------------------------------------------------------------------------------------------

    async def _lane_loop(self, hub_id: str, lane: str) -> None:
        client = self._client()
        status = self.status[lane]
        status.cursor = self.store.synced_seq(lane)
        waiter = self.store.lane_waiter(lane)
        backoff = self._backoff()
        try:
            while True:
                waiter.clear()
                try:
                    await self._drain(client, hub_id, lane)
                    backoff.reset()
                except (TransientError, PermanentError, OSError) as exc:
                    # Anything the retry loop did not absorb (a short acknowledgement, a broken spool file, a store
                    # error): the lane waits and starts again from its cursor; nothing is lost, at worst resent.
                    status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.error("sync of %s interrupted: %s", lane, status.last_error)
                    await self._pause(backoff.next())
                    continue
                await _wait(waiter, IDLE_POLL_S)
        finally:
            client.close()

    async def _drain(self, client: RegisterClient, hub_id: str, lane: str) -> None:
        """Sends batches until the lane is empty, reading the next batch from the store while one is on the wire."""
        status = self.status[lane]
        limit = self.config.batch_items
        items = await self.store.pending(lane, after=status.cursor, limit=limit)
        while items:
            prefetch = asyncio.create_task(self.store.pending(lane, after=items[-1].seq, limit=limit))
            try:
                await self._deliver(client, hub_id, lane, items)
            except BaseException:
                prefetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await prefetch
                raise
            items = await prefetch

    async def _deliver(self, client: RegisterClient, hub_id: str, lane: str, items: list[OutboxItem]) -> None:
        """Sends ``items`` until acknowledged; isolates and dead-letters what the register refuses for good."""
        status = self.status[lane]
        chunks = await asyncio.to_thread(_split_by_bytes, items, self.config.batch_bytes)
        for chunk in chunks:
            started = time.monotonic()
            try:
                async for attempt in self._retrying(lane):
                    with attempt:
                        ack = await in_thread(client.ingest, hub_id, lane, chunk)
            except RegisterRejected as exc:
                if len(chunk) > 1:
                    half = len(chunk) // 2
                    await self._deliver(client, hub_id, lane, chunk[:half])
                    await self._deliver(client, hub_id, lane, chunk[half:])
                    continue
                await self.store.dead_letter(lane, chunk[0].seq, str(exc))
                status.dead_lettered += 1
                log.error("the register refused item %d of %s for good; kept as a dead letter", chunk[0].seq, lane)
                ack = p.IngestAck(lane=lane, acked_seq=chunk[0].seq, stored=0, duplicates=0)
            if ack.acked_seq < chunk[-1].seq:
                raise RegisterUnavailable(f"register acknowledged only up to {ack.acked_seq} of {chunk[-1].seq}")
            status.cursor = max(status.cursor, ack.acked_seq)
            # The durable cursor follows at the next group commit; if it is lost in a crash the batch is resent and
            # the register ignores it as a duplicate.
            self.store.mark_synced(lane, status.cursor)
            status.sent += len(chunk)
            status.last_success = time.time()
            status.last_error = status.next_retry = None
            status.latency_ms = (time.monotonic() - started) * 1000
            if self.on_server_time is not None and client.server_time is not None:
                at, seen = client.server_time
                self.on_server_time(at + (time.monotonic() - seen))

    # ---- clips ---------------------------------------------------------------------------------------------------

    async def _clip_loop(self, hub_id: str) -> None:
        lane = Lane.CLIPS.value
        client = self._client()
        status = self.status[lane]
        status.cursor = self.store.synced_seq(lane)
        waiter = self.store.lane_waiter(lane)
        try:
            while True:
                waiter.clear()
                items = await self.store.pending(lane, after=status.cursor, limit=10)
                if not items:
                    await _wait(waiter, IDLE_POLL_S)
                    continue
                for item in items:
                    try:
                        async for attempt in self._retrying(lane):
                            with attempt:
                                await self._upload_clip(client, item)
                    except RegisterRejected as exc:
                        await self.store.dead_letter(lane, item.seq, str(exc))
                        status.dead_lettered += 1
                    except ClipGone:
                        await self._abandon_clip(client, lane, item)
                    else:
                        await self._deliver(client, hub_id, lane, [item])
                        continue
                    status.cursor = item.seq
                    self.store.mark_synced(lane, item.seq)
        finally:
            client.close()

    async def _upload_clip(self, client: RegisterClient, item: OutboxItem) -> None:
        """Resumable upload: ask the register how much it holds, send the rest in chunks, bandwidth-capped. Done
        only when the register says the clip is complete *and* the digest it verified is ours; with every byte
        held but the completion lost (a register killed in between), an empty chunk at the end completes it."""
        record = item.body
        clip_id = str(record["clip_id"])
        if self.spool_dir is None:
            raise RegisterRejected("no clip spool configured", status=0)
        path = self.spool_dir / f"{clip_id}.age"
        size = int(record["size"])
        resp = await in_thread(
            client.request, "PUT", f"/v1/clips/{clip_id}", data=json.dumps(record), headers=_JSON_HEADERS
        )
        state = client.decode(resp, p.ClipUploadStatus)
        cap = self.config.clip_bandwidth_bytes_per_s
        offset = state.offset
        while not state.complete:
            if not 0 <= offset <= size:
                raise client.bad_reply(f"clip upload: the register holds {offset} bytes of a {size}-byte clip")
            try:
                chunk = await asyncio.to_thread(_read_chunk, path, offset, CLIP_CHUNK)
            except FileNotFoundError:
                if await self._clip_indexed(clip_id):
                    # Indexed a moment before it is renamed into the spool: it will be there.
                    raise ClipNotReady("an indexed clip is not in the spool yet") from None
                raise ClipGone(clip_id) from None
            if offset < size and not chunk:
                raise RegisterRejected("a clip's spool file is shorter than its record", status=0)
            started = time.monotonic()
            try:
                resp = await in_thread(
                    client.request,
                    "PATCH",
                    f"/v1/clips/{clip_id}",
                    params={"offset": offset},
                    data=chunk,
                    headers={"Content-Type": p.CLIP_CONTENT_TYPE},
                )
            except RegisterRejected as exc:
                if exc.status != 409 or exc.offset is None:
                    raise
                offset = int(exc.offset)  # the register holds a different amount (a lost reply): resume there
                continue
            state = client.decode(resp, p.ClipUploadStatus)
            if not state.complete and state.offset == offset and not chunk:
                raise client.bad_reply("clip upload: the register left a clip incomplete with every byte held")
            offset = state.offset
            if cap:
                await asyncio.sleep(max(0.0, len(chunk) / cap - (time.monotonic() - started)))
        if state.sha256 != record["sha256"]:
            raise client.bad_reply("clip upload: the register completed a clip with another digest")

    async def _clip_indexed(self, clip_id: str) -> bool:
        def known(conn: Connection) -> bool:
            query = sa.select(schema.items.c.seq).where(
                schema.items.c.lane == Lane.CLIPS.value, schema.items.c.ref == clip_id
            )
            return conn.execute(query.limit(1)).first() is not None

        return bool(await asyncio.to_thread(self.store.read, known))

    async def _abandon_clip(self, client: RegisterClient, lane: str, item: OutboxItem) -> None:
        """The clip was erased or expired on the hub while it uploaded: tell the register to drop what it holds."""
        clip_id = str(item.body["clip_id"])
        log.info("a clip was erased or expired while it uploaded; its upload is dropped")
        try:
            async for attempt in self._retrying(lane):
                with attempt:
                    await in_thread(client.request, "DELETE", f"/v1/clips/{clip_id}")
        except RegisterRejected as exc:  # e.g. the register never had it: nothing to drop
            log.info("the register had nothing to drop for an erased clip (%s)", exc.status)

    async def _devices_loop(self, source: Callable[[], list[dict[str, str]]]) -> None:
        client = self._client()
        sent: bytes | None = None
        try:
            while True:
                records = sorted(source(), key=lambda d: d["device_id"])[: p.MAX_DEVICES]
                body = msgspec.json.encode(records)
                if body != sent:
                    try:
                        async for attempt in self._retrying("diagnostics"):
                            with attempt:
                                await in_thread(client.request, "POST", "/v1/devices", data=body, headers=_JSON_HEADERS)
                        sent = body
                    except RegisterRejected as exc:
                        log.error("the register refused the device list: %s", exc)
                await asyncio.sleep(DEVICES_INTERVAL_S)
        finally:
            client.close()

    # ---- erasures ------------------------------------------------------------------------------------------------

    async def _erasure_loop(self, erasures: Erasures) -> None:
        """Carries each erasure asked on the hub to the register, in order, until it answers with its receipt. The
        requests wait in the store, so an erasure asked while offline (or before a power cut) still arrives."""
        client = self._client()
        try:
            while True:
                erasures.waiter.clear()
                for request in await erasures.pending():
                    receipt_id = str(request.get("receipt_id", ""))
                    try:
                        async for attempt in self._retrying("diagnostics"):
                            with attempt:
                                resp = await in_thread(
                                    client.request,
                                    "POST",
                                    "/v1/erasures",
                                    data=msgspec.json.encode(request),
                                    headers=_JSON_HEADERS,
                                )
                        await erasures.carried(receipt_id, resp.json())
                        log.info("the register carried out an erasure asked on this hub")
                    except RegisterRejected as exc:
                        await erasures.refused(receipt_id, str(exc))
                    except ValueError as exc:  # a reply that is not JSON: try again later
                        log.error("the register's answer to an erasure was unreadable: %s", exc)
                await _wait(erasures.waiter, IDLE_POLL_S)
        finally:
            client.close()

    # ---- commands ------------------------------------------------------------------------------------------------

    async def _command_loop(self) -> None:
        client = self._client()
        wait = self.config.command_poll_wait
        backoff = self._backoff()
        try:
            while True:
                try:
                    async for attempt in self._retrying("diagnostics"):
                        with attempt:
                            resp = await in_thread(
                                client.request, "GET", "/v1/commands", params={"wait": wait}, read_timeout=wait + 15
                            )
                            commands = client.decode(resp, list[p.Command])
                    backoff.reset()
                except RegisterRejected as exc:
                    log.error("could not read commands from the register: %s", exc)
                    await self._pause(backoff.next())
                    continue
                for command in commands:
                    await self._run_command(client, command)
        finally:
            client.close()

    async def _run_command(self, client: RegisterClient, command: p.Command) -> None:
        handler = self.command_handlers.get(command.kind)
        if handler is None:
            result = p.CommandResult(status="failed", detail={"error": f"this hub cannot {command.kind}"})
        else:
            try:
                result = p.CommandResult(status="done", detail=await handler(command))
            except Exception as exc:  # a failed command is reported to the register, not fatal to the hub
                # A handler may say more than its message, e.g. why a member list was refused (it logs that itself).
                extra = getattr(exc, "detail", None)
                if extra is None:
                    log.exception("command %s failed", command.kind)
                result = p.CommandResult(
                    status="failed", detail={**(extra if isinstance(extra, dict) else {}), "error": str(exc)[:300]}
                )
        try:
            async for attempt in self._retrying("diagnostics"):
                with attempt:
                    await in_thread(
                        client.request,
                        "POST",
                        f"/v1/commands/{command.id}/result",
                        data=msgspec.json.encode(result),
                        headers=_JSON_HEADERS,
                    )
        except RegisterRejected as exc:  # e.g. 409: a result was already given (our earlier reply got lost)
            log.warning("the register refused the result of command %s: %s", command.kind, exc)

    def summary(self) -> dict[str, Any]:
        return {
            "register": self.config.register_url,
            "lanes": {lane: vars(s).copy() for lane, s in self.status.items()},
            "replies": vars(self.replies).copy(),
        }


_JSON_HEADERS = {"Content-Type": "application/json"}
_size_encoder = msgspec.msgpack.Encoder()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass. ``asyncio.timeout``, not ``wait_for``: on Python 3.11 the latter
    drops a cancel that lands as the event is set, and a loop that misses its cancel would hold the daemon's stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _bind(fn: Callable[..., Awaitable[None]], *args: Any) -> Callable[[], Awaitable[None]]:
    return lambda: fn(*args)


def _read_chunk(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def _split_by_bytes(items: list[OutboxItem], limit: int) -> list[list[OutboxItem]]:
    """Batches under ``limit`` bytes of (uncompressed) body; one oversized item still goes alone."""
    out: list[list[OutboxItem]] = []
    current: list[OutboxItem] = []
    size = 0
    for item in items:
        estimate = 16 + len(_size_encoder.encode(item.body))
        if current and size + estimate > limit:
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += estimate
    if current:
        out.append(current)
    return out
