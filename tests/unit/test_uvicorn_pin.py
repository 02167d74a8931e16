"""Why the register subclasses uvicorn's internals, and the tripwire for when uvicorn changes under it.

uvicorn does not put the ASGI TLS extension (the peer's certificate) in a request's scope (encode/uvicorn#1118),
and the register authenticates hubs by that certificate, so ``cloud_sync.register.server.TLSH11Protocol``
subclasses uvicorn's ``H11Protocol`` to add it, and uses the protocol's per-connection state (``cycle``,
``on_response_complete``, ``shutdown``) for its request-head timer and its quick stop. That is internal API, so
setup.cfg pins uvicorn to one minor version; these tests fail when the pin and the installed version drift apart,
when the internals the subclass touches are gone, or when uvicorn starts doing the job itself (then the subclass
can go).
"""

from __future__ import annotations

import asyncio
import configparser
import http.client
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from packaging.requirements import Requirement
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from cloud_sync.register.ca import CertificateAuthority
from cloud_sync.register.server import TLSH11Protocol

ROOT = Path(__file__).resolve().parents[2]


def test_setup_cfg_pins_the_installed_uvicorn_to_one_minor_version() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options.extras_require"]["register"].splitlines() if ln.strip()]
    (req,) = [Requirement(ln) for ln in lines if Requirement(ln).name == "uvicorn"]
    assert uvicorn.__version__ in req.specifier, (uvicorn.__version__, str(req.specifier))
    major, minor = (int(x) for x in uvicorn.__version__.split(".")[:2])
    # One minor version only: the next one may change the internals below.
    assert f"{major}.{minor + 1}.0" not in req.specifier
    assert f"{major}.{minor}.0" in req.specifier


async def test_the_internals_the_subclass_uses_are_there() -> None:
    # async: the protocol takes the running loop (outside one, asyncio.get_event_loop() fails after other tests)
    config = uvicorn.Config(app=_app)
    config.load()
    proto = H11Protocol(config, ServerState(), app_state={})
    for name in ("connection_made", "connection_lost", "shutdown", "on_response_complete"):
        assert callable(getattr(H11Protocol, name)), name
        assert name in vars(TLSH11Protocol), f"TLSH11Protocol no longer overrides {name}"
    for name in ("cycle", "config", "app", "loop", "client", "timeout_keep_alive"):
        assert hasattr(proto, name), name
    assert proto.cycle is None  # None between requests: the subclass reads that as "idle"
    assert "response_complete" in RequestResponseCycle.__init__.__code__.co_names


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    tls = (scope.get("extensions") or {}).get("tls")
    body = b"no-tls" if tls is None else repr(sorted(tls)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A server certificate from the register's own CA, as ``server.build_config`` makes one."""
    d = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.load_or_create(d)
    crt, key = ca.write_server_cert(d, ["localhost"], days=1)
    return crt, key, d / "ca.crt"


def _serve_and_get(cert: tuple[Path, Path, Path], protocol: Any) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app, http=protocol, ssl_certfile=str(cert[0]), ssl_keyfile=str(cert[1]), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        ctx = ssl.create_default_context(cafile=str(cert[2]))
        conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        conn.request("GET", "/")
        reply = conn.getresponse().read().decode()
        conn.close()
        return reply
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_plain_uvicorn_gives_no_tls_extension_and_the_subclass_does(cert: tuple[Path, Path, Path]) -> None:
    # If this first assertion fails, uvicorn implements the extension itself: TLSH11Protocol's scope part can go.
    assert _serve_and_get(cert, H11Protocol) == "no-tls"
    assert "client_cert_chain" in _serve_and_get(cert, TLSH11Protocol)
