"""The hub's HTTPS client for the register: its identity (the files ``kotihub provision`` wrote), the errors a call
ends in (transient: retried; permanent: the register refused), and blocking calls run in threads of their own
(:func:`in_thread`), never the shared default executor, so a 55 s long-poll neither delays shutdown nor starves
the store's reads."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import msgspec
import requests

from cloud_sync import protocol as p
from gateway.errors import PermanentError, TransientError
from gateway.store import OutboxItem

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}


class RegisterUnavailable(TransientError):
    """Network trouble, a timeout, 5xx or 429: try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionLost(RegisterUnavailable):
    """No reply came: the connection failed, was refused or timed out (as opposed to a reply saying "later")."""


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
    last_ok_at: float | None = None
    """When the register last answered a request with success: the updater's "the uplink reached the register"."""

    def bad(self, what: str) -> None:
        self.bad_replies += 1
        self.last_bad_reply = what[:300]
        self.last_bad_at = time.time()


def _server_time(headers: Any) -> tuple[float, float] | None:
    value = headers.get("Date") if headers is not None else None
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp(), time.monotonic()
    except (TypeError, ValueError):
        return None


def _keep_alive(headers: Any) -> float | None:
    """The ``timeout=N`` of a ``Keep-Alive`` header (RFC 2068 19.7.1.1, as servers still send it), else None."""
    value = headers.get("Keep-Alive") if headers is not None else None
    for part in (value or "").split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            try:
                seconds = float(number.strip())
            except ValueError:
                return None
            return seconds if 0 < seconds < 86_400 else None
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
    """Blocking HTTPS calls to the register with the hub's certificate over one connection: the alarm lane's, the
    command long-poll's, or (``shared``) the one the bulk lanes take turns on."""

    def __init__(
        self,
        base_url: str,
        identity: HubIdentity,
        *,
        connect_timeout: float,
        read_timeout: float,
        replies: ReplyStats | None = None,
        shared: bool = False,
        on_reply: Callable[[str | None], None] | None = None,
    ) -> None:
        """``on_reply``: told the :data:`~cloud_sync.protocol.ALARM_URL_HEADER` of every successful reply (None
        when absent); set on the clients of the register's main URL only."""
        self.replies = replies or ReplyStats()
        self.on_reply = on_reply
        self.base = base_url.rstrip("/")
        self.identity = identity
        self.session = requests.Session()
        # Several lanes' threads use a shared client: one request at a time, so they take turns on its one connection
        # instead of each opening another.
        self._turn: contextlib.AbstractContextManager[Any] = threading.Lock() if shared else contextlib.nullcontext()
        self.session.trust_env = False  # no proxies or CA bundles from the environment: only the register's CA
        self.session.cert = (str(identity.cert), str(identity.key))
        self._cert_stamp = self._stamp()
        self.session.verify = str(identity.ca)
        self.timeout = (connect_timeout, read_timeout)
        self.server_time: tuple[float, float] | None = None
        """The register's clock from its last ``Date`` header, with our monotonic time when it arrived."""
        self.answered_at: float | None = None
        """Monotonic time of the last reply on this client's connection; None before the first or after a close."""
        self.kept_s: float | None = None
        """How long the register last said it keeps the idle connection (``Keep-Alive: timeout=N``), if it said."""
        self.takes_columns = False
        """Whether the register's last ingest ack said it takes readings as columns
        (:data:`~cloud_sync.protocol.READING_COLUMNS_HEADER`); until then readings go as items."""

    def close(self) -> None:
        self.session.close()
        self.answered_at = None

    def kept_alive(self, default_s: float) -> bool:
        """Whether the next request probably goes over the connection the last reply came on (the register keeps an
        idle one ``kept_s``, else ``default_s``): a guess, used only to bound how long a first answer may take."""
        if self.answered_at is None:
            return False
        return time.monotonic() - self.answered_at < (self.kept_s or default_s)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.identity.cert.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def request(self, method: str, path: str, *, read_timeout: float | None = None, **kw: Any) -> requests.Response:
        with self._turn:
            return self._request(method, path, read_timeout=read_timeout, **kw)

    def _request(self, method: str, path: str, *, read_timeout: float | None, **kw: Any) -> requests.Response:
        timeout = self.timeout if read_timeout is None else (self.timeout[0], read_timeout)
        stamp = self._stamp()
        if stamp != self._cert_stamp:
            # The certificate was renewed: pooled connections still speak with the old (soon retired) one.
            self._cert_stamp = stamp
            self.close()
        try:
            resp = self.session.request(method, self.base + path, timeout=timeout, **kw)
        except requests.RequestException as exc:
            self.answered_at = None
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        self.answered_at = time.monotonic()
        # Only the ping's reply says it; an alarm's ack after it does not take it back.
        self.kept_s = _keep_alive(resp.headers) or self.kept_s
        self.server_time = _server_time(resp.headers) or self.server_time
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RegisterUnavailable(f"register answered {resp.status_code}", retry_after=_retry_after(resp.headers))
        if resp.status_code in (401, 403):
            # Our certificate was refused (revoked, expired or retired): keep buffering and keep trying; a person
            # must act. The next attempt connects afresh, with whatever certificate is on disk by then.
            self.close()
            raise RegisterUnavailable(f"register refused the hub's certificate ({resp.status_code}): {_detail(resp)}")
        if resp.status_code == 408:
            raise RegisterUnavailable("register timed out reading the request")
        if resp.status_code >= 400:
            offset = None
            if resp.status_code == 409:
                with contextlib.suppress(ValueError, AttributeError):
                    offset = resp.json().get("offset")
            raise RegisterRejected(f"{resp.status_code}: {_detail(resp)}", status=resp.status_code, offset=offset)
        self.replies.last_ok_at = time.time()
        if self.on_reply is not None:
            self.on_reply(resp.headers.get(p.ALARM_URL_HEADER))
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

    def ingest(
        self, hub_id: str, lane: str, items: list[OutboxItem], *, read_timeout: float | None = None
    ) -> p.IngestAck:
        wire = [p.Item(i.seq, i.ts, i.body) for i in items]
        columns = p.reading_columns(hub_id, wire) if lane == "readings" and self.takes_columns else None
        if columns is not None and p.columns_pay(columns):
            try:
                return self._send(lane, columns, p.READING_COLUMNS_CONTENT_TYPE, read_timeout)
            except RegisterRejected as exc:
                if exc.status != 415:
                    raise
                # A register that does not take columns (rolled back to a release before them): items, from now on.
                self.takes_columns = False
                log.info("the register does not take readings as columns; sending items")
        batch = p.IngestBatch(hub_id=hub_id, lane=cast(p.LaneName, lane), items=wire)
        return self._send(lane, batch, p.MSGPACK_CONTENT_TYPE, read_timeout)

    def _send(
        self, lane: str, batch: p.IngestBatch | p.ReadingColumns, ctype: str, read_timeout: float | None
    ) -> p.IngestAck:
        resp = self.request(
            "POST",
            f"/v1/ingest/{lane}",
            read_timeout=read_timeout,
            data=p.encode_batch(batch),
            headers={"Content-Type": ctype, "Content-Encoding": p.ZSTD_ENCODING},
        )
        ack = self.decode(resp, p.IngestAck)
        self.takes_columns = resp.headers.get(p.READING_COLUMNS_HEADER) == "1"
        return ack


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
