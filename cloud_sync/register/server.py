"""Run the register under uvicorn with TLS, passing each request's verified client certificate to the app.

uvicorn does not implement the ASGI TLS extension (encode/uvicorn#1118), so :class:`TLSH11Protocol` adds it: on
each TLS connection it reads the peer certificate the handshake verified against the register CA and puts it in
``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM, as the extension specifies). Client certificates are
optional at the TLS layer (enrollment and health need none); the app requires one on hub endpoints.

Hostile connections are bounded here, in-process (docs/register.md, "Hostile connections", says why not a proxy):
the TLS handshake must finish within ``tls_handshake_timeout_s`` (:class:`RegisterLoop`), each request's head
must arrive within ``first_request_timeout_s`` of the connection or of the previous response, and
:class:`ConnectionGate` caps connections per source address and, separately, those without a client certificate,
so idle anonymous connections can never take the slots of hubs (uvicorn's ``limit_concurrency`` is shared by
everyone and answers 503 to all once full, so it is off). The server certificate is re-issued and loaded into the
live TLS context well before it expires (:meth:`ReadyServer.rotate_server_cert`), without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from cloud_sync import protocol as p
from cloud_sync.certs import renewal_due_in
from cloud_sync.register import alarm_listener, retention, servercert
from cloud_sync.register.app import create_app
from cloud_sync.register.notify import dispatch
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.wakeups import Wakeups

log = logging.getLogger(__name__)

_PING = ("GET", p.ALARM_PING_PATH)
_ALARM_PATHS = frozenset({p.ALARM_PING_PATH, alarm_listener.ALARM_PATH})

GIL_SWITCH_S = 0.001
"""CPython's GIL switch interval in a serving register process (its default is 5 ms)."""


class _WithTLS:
    """An ASGI wrapper adding the TLS extension to every scope of one connection, and answering a hub's alarm ping
    itself.

    The ping (:data:`~cloud_sync.protocol.ALARM_PING_PATH`) of a connection whose client certificate the handshake
    verified is answered here, before the app: a fleet's hubs send some 400 a second per 50,000 homes, and the app's
    middleware (metrics, body budget) and routing doubled what each cost the register (bench/alarm_keepalive.py).
    Without a certificate it goes on to the app's route, which documents it and refuses the caller (401)."""

    def __init__(self, app: Any, tls: dict[str, Any], ping_headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.tls = tls
        self.ping_headers = ping_headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) == _PING and self.tls["client_cert_chain"]:
            await send({"type": "http.response.start", "status": 204, "headers": self.ping_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": self.tls}}
        await self.app(scope, receive, send)


@dataclass
class ConnectionGate:
    """Counts the open connections per source address and those without a client certificate, and refuses
    (closes at once) a connection beyond either cap. Used from the event loop thread only."""

    per_source: int
    anonymous: int
    by_source: Counter[str] = field(default_factory=Counter)
    anonymous_open: int = 0
    refused: int = 0

    def admit(self, source: str, has_cert: bool) -> bool:
        if self.by_source[source] >= self.per_source or (not has_cert and self.anonymous_open >= self.anonymous):
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning("refused %d connection(s) over the per-source or anonymous cap", self.refused)
            return False
        self.by_source[source] += 1
        if not has_cert:
            self.anonymous_open += 1
        return True

    def release(self, source: str, has_cert: bool) -> None:
        self.by_source[source] -= 1
        if self.by_source[source] <= 0:
            del self.by_source[source]
        if not has_cert:
            self.anonymous_open -= 1


class RegisterConfig(uvicorn.Config):
    """uvicorn's config plus the register's connection policy."""

    def __init__(self, app: Any, *, settings: Settings, hosts: list[str], registry: Registry, **kw: Any) -> None:
        super().__init__(app, **kw)
        self.settings = settings
        self.hosts = hosts
        self.registry = registry
        self.gate = ConnectionGate(
            per_source=settings.max_connections_per_source, anonymous=settings.max_anonymous_connections
        )


TLS_READ_BUFFER = 32 * 1024
"""Bytes asyncio's TLS layer reads from a socket at once, and so holds per connection (its default, 256 KiB, is
allocated and touched for every connection: a register holding each hub's long-poll and alarm connections paid
288 KiB of memory per connection; bench/alarm_keepalive.py). Two TLS records' worth: a 16 MiB body is read in 512
reads instead of 64, nothing next to inflating and decoding it."""


class RegisterLoop(asyncio.SelectorEventLoop):
    """The event loop, with a bounded TLS handshake on every server it creates (uvicorn passes none, and
    asyncio's default is 60 s), and a smaller TLS read buffer per connection (:data:`TLS_READ_BUFFER`)."""

    handshake_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        # A class attribute of asyncio's TLS protocol, the only place it can be set; in a register process every TLS
        # connection is the register's own.
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER

    async def create_server(self, *args: Any, **kw: Any) -> asyncio.Server:
        if kw.get("ssl") is not None:
            kw.setdefault("ssl_handshake_timeout", self.handshake_timeout_s)
        return await super().create_server(*args, **kw)


class TLSH11Protocol(H11Protocol):
    _admitted: tuple[str, bool] | None = None
    _request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        config = self.config
        if isinstance(config, RegisterConfig):
            source = self.client[0] if self.client else ""
            if not config.gate.admit(source, bool(der)):
                transport.abort()
                return
            self._admitted = (source, bool(der))
            self._arm_request_timer()
        if sslobj is None:
            return
        cipher = sslobj.cipher()
        tls = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": None,
            "cipher_suite": None,
            "tls_version_name": sslobj.version(),
            "cipher_name": cipher[0] if cipher else None,
        }
        kept = config.settings.alarm_keep_alive_s if isinstance(config, RegisterConfig) else self.timeout_keep_alive
        self.app = _WithTLS(self.app, tls, [(b"keep-alive", f"timeout={int(kept)}".encode())])

    _stopping = False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted is not None and isinstance(self.config, RegisterConfig):
            self.config.gate.release(*self._admitted)
            self._admitted = None
        if self._request_timer is not None:
            self._request_timer.cancel()
        super().connection_lost(exc)

    def _arm_request_timer(self) -> None:
        """The next request's head must arrive in time (uvicorn's keep-alive timer stops at the first byte, so a
        client trickling bytes would hold the connection for ever)."""
        assert isinstance(self.config, RegisterConfig)
        if self._request_timer is not None:
            self._request_timer.cancel()
        waiting_after = self.cycle
        timeout = self.config.settings.first_request_timeout_s if waiting_after is None else self.timeout_keep_alive

        def expire() -> None:
            # Only while idle: a pipelined request that started at once (or a long-poll) is not cut.
            idle = self.cycle is None or self.cycle.response_complete
            if self.cycle is waiting_after and idle and not self.transport.is_closing():
                self.transport.abort()

        self._request_timer = self.loop.call_later(timeout, expire)

    def timeout_keep_alive_handler(self) -> None:
        # An idle connection's keep-alive ran out: drop it now, as shutdown() does. A TLS close would hold the socket
        # (and its memory) until the client's close_notify, which an idle client never sends: 30 s more per idle
        # connection, for every hub's bulk connection between its batches.
        if not self.transport.is_closing():
            self.transport.abort()

    def _keep_alive_after(self, cycle: Any) -> float:
        """How long the connection may idle after this response: ``alarm_keep_alive_s`` for a hub's alarm connection
        (its last request an alarm or an alarm ping, with a client certificate), ``keep_alive_s`` otherwise, so
        strangers cannot hold connections longer by asking for the alarm's paths."""
        config = self.config
        if not isinstance(config, RegisterConfig):
            return self.timeout_keep_alive
        alarm = cycle is not None and cycle.scope["path"] in _ALARM_PATHS
        certified = self._admitted is not None and self._admitted[1]
        seconds = config.settings.alarm_keep_alive_s if alarm and certified else config.settings.keep_alive_s
        return seconds

    def shutdown(self) -> None:
        self._stopping = True
        if self.cycle is None or self.cycle.response_complete:
            # Idle keep-alive connection: nothing in flight, so drop it rather than wait for the client's TLS
            # close_notify (which an idle client never sends, stalling shutdown until the graceful timeout).
            self.transport.abort()
        else:
            super().shutdown()

    def on_response_complete(self) -> None:
        self.timeout_keep_alive = self._keep_alive_after(self.cycle)  # type: ignore[assignment]  # a float is fine
        super().on_response_complete()
        if self._stopping:
            # The last response of a stopping server: its TLS close would wait for the client's close_notify,
            # as an idle one would; once the bytes have left, drop it the same way.
            self.loop.call_later(0.2, self.transport.abort)
        elif self._admitted is not None and not self.transport.is_closing():
            self._arm_request_timer()


def _ssl_context(config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert config.ssl_certfile is not None
    assert config.ssl_ca_certs is not None
    # Under the pair's lock: another register process on this state directory may be renewing it right now.
    with servercert.locked(Path(config.ssl_certfile).parent):
        ctx.load_cert_chain(str(config.ssl_certfile), str(config.ssl_keyfile))
    ctx.load_verify_locations(str(config.ssl_ca_certs))
    # Optional at the TLS layer: a certificate that is presented must still verify against our CA.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def build_config(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    registry: Registry | None = None,
    graceful_s: int = 5,
    alarm_only: bool = False,
) -> RegisterConfig:
    """A uvicorn config serving the register over TLS with a server certificate from its own CA; ``alarm_only``: the
    alarm listener's app (:mod:`cloud_sync.register.alarm_listener`) instead of the whole register."""
    reg = registry or Registry(settings)
    hosts = ["localhost", "127.0.0.1", host]
    cert, key = servercert.current_or_new(reg.ca, settings.state_dir, hosts, days=settings.server_cert_days)
    app = alarm_listener.create_alarm_app(settings, registry=reg) if alarm_only else create_app(settings, registry=reg)
    return RegisterConfig(
        app,
        settings=settings,
        hosts=hosts,
        registry=reg,
        host=host,
        port=port,
        http=TLSH11Protocol,
        loop=f"{__name__}:RegisterLoop",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        ssl_ca_certs=str(settings.state_dir / "ca.crt"),
        ssl_context_factory=_ssl_context,
        lifespan="off",
        log_level="warning",
        # Per connection after each response (TLSH11Protocol.on_response_complete): a hub's alarm connection longer.
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=graceful_s,
        # Off: it is one pool for everyone, and 503s every request once idle connections fill it. ConnectionGate
        # caps connections per source and anonymous ones apart from hubs instead.
        limit_concurrency=None,
        # Off: the register terminates TLS itself and no HTTP proxy may stand in front of it (docs/register.md,
        # "Hostile connections"), so an X-Forwarded-For comes from the client; uvicorn's default would believe one
        # from 127.0.0.1 and let it name any source for the per-source limits. One middleware fewer per request too.
        proxy_headers=False,
    )


class ReadyServer(uvicorn.Server):
    """A uvicorn server that signals when it is listening (for supervisors and tests), and rotates its own
    server certificate."""

    def __init__(self, config: uvicorn.Config, *, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._on_ready = on_ready
        self.loop: asyncio.AbstractEventLoop | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._served = ""

    async def startup(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        if isinstance(self.loop, RegisterLoop) and isinstance(self.config, RegisterConfig):
            self.loop.handshake_timeout_s = self.config.settings.tls_handshake_timeout_s
        notifier = self._notifier()
        if notifier is not None:
            # Listening before the first long-poll arrives, so no command queued elsewhere waits for a re-read.
            await notifier.start()
        await super().startup(sockets)
        if self.started:
            if isinstance(self.config, RegisterConfig):
                self._rotation = asyncio.create_task(self._rotate_when_due(self.config), name="server-cert")
            log.info("register listening on https://%s:%d", self.config.host, self.config.port)
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready()

    def _notifier(self) -> Wakeups | None:
        app = self.config.app
        while not isinstance(app, FastAPI) and hasattr(app, "app"):
            app = app.app  # through wrappers (fault injection in tests)
        notifier = getattr(app.state, "notifier", None) if isinstance(app, FastAPI) else None
        return notifier if isinstance(notifier, Wakeups) else None

    async def shutdown(self, sockets: Any = None) -> None:
        # Command long-polls answer at once (with what is pending), so the graceful stop has nothing to wait for.
        notifier = self._notifier()
        if notifier is not None:
            notifier.close()

        if self._rotation is not None:
            self._rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotation
        await super().shutdown(sockets)

    async def rotate_server_cert(self) -> x509.Certificate:
        """Issue a new server certificate and serve it to every new connection from now on; connections already
        open keep theirs."""
        await self._refresh_cert(force=True)
        config = self.config
        assert isinstance(config, RegisterConfig)
        return x509.load_pem_x509_certificate((config.settings.state_dir / "server.crt").read_bytes())

    async def _refresh_cert(self, *, force: bool) -> None:
        """Renew the shared pair if it is due (or ``force``), and serve the pair on disk if it is not the one
        this process serves (another register process renewed it)."""
        config = self.config
        assert isinstance(config, RegisterConfig) and config.ssl is not None
        days = config.settings.server_cert_days
        await asyncio.to_thread(
            servercert.renew_if_due, config.registry.ca, config.settings.state_dir, config.hosts, days=days, force=force
        )
        # Loaded on the event loop, so no handshake sees a certificate without its key; the lock is held by a
        # writer only while it writes two small files.
        with servercert.locked(config.settings.state_dir) as (cert_path, key_path):
            served = servercert.fingerprint(cert_path)
            if served == self._served:
                return
            config.ssl.load_cert_chain(str(cert_path), str(key_path))
            # The first check loads the pair again: it may have changed after uvicorn read it at start.
            first, self._served = not self._served, served
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if not first:
            log.info("server certificate rotated; valid until %s", cert.not_valid_after_utc.isoformat())

    async def _rotate_when_due(self, config: RegisterConfig) -> None:
        cert_path = config.settings.state_dir / "server.crt"
        while True:
            try:
                await self._refresh_cert(force=False)
                due_in = renewal_due_in(await asyncio.to_thread(cert_path.read_bytes), time.time())
            except (OSError, ValueError, ssl.SSLError):  # retried at the next check; the old one still serves
                log.exception("server certificate rotation failed")
                due_in = config.settings.server_cert_check_s
            await asyncio.sleep(max(1.0, min(due_in, config.settings.server_cert_check_s)))


class BackgroundServer:
    """The register served from a thread of this process (``kotihub demo``, tests); ``stop()``/``start()`` keep
    the port and the state."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8443,
        registry: Registry | None = None,
        graceful_s: int = 5,
    ) -> None:
        self.settings = settings
        self.host, self.port, self.graceful_s = host, port, graceful_s
        self.registry = registry or Registry(settings)
        self._server: ReadyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> None:
        if self._server is not None:
            raise RuntimeError("already running")
        config = build_config(
            self.settings, host=self.host, port=self.port, registry=self.registry, graceful_s=self.graceful_s
        )
        server = ReadyServer(config)
        thread = threading.Thread(target=server.run, name="register", daemon=True)
        thread.start()
        if not server.ready.wait(timeout):
            server.should_exit = True
            thread.join(timeout)
            raise RuntimeError(f"register did not start within {timeout} s")
        self._server, self._thread = server, thread

    def stop(self, timeout: float = 30) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"register did not stop within {timeout} s")
        self._server = self._thread = None

    def close(self) -> None:
        self.stop()
        self.registry.close()


def _retention_loop(registry: Registry, stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        try:
            retention.purge_expired(registry)
        except Exception:  # a failed purge is retried next hour; it must not stop the register
            log.exception("retention purge failed")


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    retention_interval_s: float = 3600,
    sockets: list[socket.socket] | None = None,
    retention: bool = True,
    on_ready: Callable[[], None] | None = None,
    alarm_only: bool = False,
) -> None:
    """Run the register until SIGINT/SIGTERM, purging expired data every ``retention_interval_s`` and dispatching
    notifications (configured from the environment, :mod:`cloud_sync.register.notify.config`). A stop takes well
    under 2 s: long-polls answer at once, and a request still running after 1 s is cut (the hub retries). The one
    wait allowed longer is a notification being handed to a provider at that moment: the stop lets that call end
    (at most the provider timeout, ``KOTIHUB_NOTIFY_TIMEOUT_S``) so that its outcome is recorded and nobody is told
    twice; a SIGKILL instead leaves the job for the next start, which asks the provider before resending.

    ``sockets``: listen on these instead of binding ``host:port`` (a worker of :mod:`cloud_sync.register.workers`);
    ``retention``: whether this process runs the hourly purge; ``on_ready``: called once it is listening;
    ``alarm_only``: serve the alarm listener's app (it still dispatches notifications: an alarm it stores wakes
    this process's dispatcher at once, not at another process's next poll)."""
    # The event loop hands every request to a worker thread and back, and takes the GIL from bulk threads at each
    # hop: at CPython's 5 ms switch interval an alarm's few hops waited tens of ms behind bulk decoding and COPY rows.
    sys.setswitchinterval(GIL_SWITCH_S)
    registry = Registry(settings, urgent_pre_ping=not alarm_only)
    if alarm_only:
        alarm_listener.warm(registry)
    stop = threading.Event()
    purger = threading.Thread(
        target=_retention_loop, args=(registry, stop, retention_interval_s), name="retention", daemon=True
    )
    if retention:
        purger.start()
    _, stop_dispatch = dispatch.start(registry)
    try:
        config = build_config(settings, host=host, port=port, registry=registry, graceful_s=1, alarm_only=alarm_only)
        ReadyServer(config, on_ready=on_ready).run(sockets=sockets)
    finally:
        stop_dispatch()
        stop.set()
        if purger.is_alive():
            purger.join(60)
        registry.close()
