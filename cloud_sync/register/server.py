"""Run the register under uvicorn with TLS, passing each request's verified client certificate to the app.

uvicorn does not implement the ASGI TLS extension (encode/uvicorn#1118), so :class:`TLSH11Protocol` adds it: on
each TLS connection it reads the peer certificate the handshake verified against the register CA and puts it in
``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM, as the extension specifies). Client certificates are
optional at the TLS layer (enrollment and health need none); the app requires one on hub endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from cloud_sync.register import retention
from cloud_sync.register.app import create_app
from cloud_sync.register.notify import dispatch
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings

log = logging.getLogger(__name__)


class _WithTLS:
    """An ASGI wrapper adding the TLS extension to every scope of one connection."""

    def __init__(self, app: Any, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": self.tls}}
        await self.app(scope, receive, send)


class TLSH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if sslobj is None:
            return
        der = sslobj.getpeercert(binary_form=True)
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
        self.app = _WithTLS(self.app, tls)

    _stopping = False

    def shutdown(self) -> None:
        self._stopping = True
        if self.cycle is None or self.cycle.response_complete:
            # Idle keep-alive connection: nothing in flight, so drop it rather than wait for the client's TLS
            # close_notify (which an idle client never sends, stalling shutdown until the graceful timeout).
            self.transport.abort()
        else:
            super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._stopping:
            # The last response of a stopping server: its TLS close would wait for the client's close_notify,
            # as an idle one would; once the bytes have left, drop it the same way.
            self.loop.call_later(0.2, self.transport.abort)


def _ssl_context(config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert config.ssl_certfile is not None
    assert config.ssl_ca_certs is not None
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
) -> uvicorn.Config:
    """A uvicorn config serving the register over TLS with a server certificate from its own CA."""
    reg = registry or Registry(settings)
    cert, key = reg.ca.write_server_cert(settings.state_dir, ["localhost", "127.0.0.1", host])
    return uvicorn.Config(
        create_app(settings, registry=reg),
        host=host,
        port=port,
        http=TLSH11Protocol,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        ssl_ca_certs=str(settings.state_dir / "ca.crt"),
        ssl_context_factory=_ssl_context,
        lifespan="off",
        log_level="warning",
        # Long-polls last up to 30 s; keep-alive between them lets a hub reuse its TLS session.
        timeout_keep_alive=35,
        timeout_graceful_shutdown=graceful_s,
        # Beyond this many connections new ones get 503 instead of exhausting memory and file descriptors.
        limit_concurrency=1024,
    )


class ReadyServer(uvicorn.Server):
    """A uvicorn server that signals when it is listening (for supervisors and tests)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            log.info("register listening on https://%s:%d", self.config.host, self.config.port)
            self.ready.set()

    async def shutdown(self, sockets: Any = None) -> None:
        # Command long-polls answer at once (with what is pending), so the graceful stop has nothing to wait for.
        app = self.config.app
        while not isinstance(app, FastAPI) and hasattr(app, "app"):
            app = app.app  # through wrappers (fault injection in tests)
        notifier = getattr(app.state, "notifier", None) if isinstance(app, FastAPI) else None
        if notifier is not None:
            notifier.close()
        await super().shutdown(sockets)


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


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8443, retention_interval_s: float = 3600) -> None:
    """Run the register until SIGINT/SIGTERM, purging expired data every ``retention_interval_s`` and dispatching
    notifications (configured from the environment, :mod:`cloud_sync.register.notify.config`). A stop takes well
    under 2 s: long-polls answer at once, and a request still running after 1 s is cut (the hub retries). The one
    wait allowed longer is a notification being handed to a provider at that moment: the stop lets that call end
    (at most the provider timeout, ``KOTIHUB_NOTIFY_TIMEOUT_S``) so that its outcome is recorded and nobody is told
    twice; a SIGKILL instead leaves the job for the next start, which asks the provider before resending."""
    registry = Registry(settings)
    stop = threading.Event()
    purger = threading.Thread(
        target=_retention_loop, args=(registry, stop, retention_interval_s), name="retention", daemon=True
    )
    purger.start()
    _, stop_dispatch = dispatch.start(registry)
    try:
        ReadyServer(build_config(settings, host=host, port=port, registry=registry, graceful_s=1)).run()
    finally:
        stop_dispatch()
        stop.set()
        purger.join(60)
        registry.close()
