"""The alarm listener (``kotihub-register serve --alarm-port P``): a register process that serves only the alarm lane.

Under fleet load one register process shares its event loop (TLS handshakes, HTTP parsing), its GIL and its CPU
share between bulk ingest and a smoke alarm, and the alarm waited seconds (docs/scale.md, "The alarm lane under
load"). This process serves ``POST /v1/ingest/alarm`` alone (and the hubs' pings that keep their alarm connections open,
``GET /v1/alarm/ping``), with the same route code, the same mTLS and the same hub checks as the main port, and
answers every other request with 404 ``alarm_listener_only``; the bulk workers run
niced under it (:mod:`cloud_sync.register.workers`).

A smoke alarm's ack waits for about a dozen round trips to PostgreSQL, each behind bulk ingest's backends on a busy
database, so this process spares it what it can: its alarm pool is opened at start (:func:`warm`) and hands out
connections without a test round trip first. A connection PostgreSQL dropped (a restart) fails that one alarm with a
500, which the hub resends to the main port at once (``cloud_sync.uplink.alarmroute``), and SQLAlchemy replaces
the pool's connections for the next.

Hubs learn where it is from the main port: every reply to a ``/v1/`` request there carries the
:data:`~cloud_sync.protocol.ALARM_URL_HEADER` header, ``https://<the host the hub asked for>:<alarm port>``
(:class:`AnnounceAlarmURL`). The host is the one in the request's ``Host`` header, which is the host of the register
URL the hub already uses, so a hub behind any name reaches the listener by the same name; the hub checks that it is
(``cloud_sync.uplink.alarmroute``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from fastapi import FastAPI

from cloud_sync import protocol as p
from cloud_sync.register import metrics
from cloud_sync.register.budget import MemoryBudget
from cloud_sync.register.lanegate import LaneGate
from cloud_sync.register.registry import URGENT_POOL, Registry
from cloud_sync.register.routes import errors, hub_ingest
from cloud_sync.register.routes.common import BodyBudget, Callers
from cloud_sync.register.settings import Settings

ALARM_PATH = f"{p.API_PREFIX}/ingest/alarm"
NOT_HERE = msgspec.json.encode(
    {
        "error": "alarm_listener_only",
        "detail": f"this port serves only POST {ALARM_PATH}; everything else is on the register's main port",
    }
)


_SERVED = frozenset({("POST", ALARM_PATH), ("GET", p.ALARM_PING_PATH)})


def _host_of(value: str) -> str | None:
    """The host of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), or None if it is not one."""
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 1 else None
    host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    if not host or any(c in host for c in "/@?#\\ ") or ":" in host:
        return None
    return host


class AnnounceAlarmURL:
    """ASGI middleware of the main port: tells hubs the alarm listener's URL on every ``/v1/`` reply."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(f"{p.API_PREFIX}/"):
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == b"host"), b"")
        host = _host_of(raw.decode("latin-1").strip())
        if host is None:
            await self.app(scope, receive, send)
            return
        header = (p.ALARM_URL_HEADER.lower().encode(), f"https://{host}:{self.port}".encode())

        async def announce(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, announce)


class OnlyAlarmIngest:
    """ASGI wrapper of the alarm listener: 404 for anything but ``POST /v1/ingest/alarm`` and the hub's
    ``GET /v1/alarm/ping``, before any routing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in _SERVED:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(NOT_HERE)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": NOT_HERE})


def warm(registry: Registry) -> None:
    """Opens the alarm lane's pool now, so no smoke alarm waits for a PostgreSQL connection (its TCP, its
    authentication and the stage table every register connection makes) to be set up."""
    with contextlib.ExitStack() as held:
        for _ in range(URGENT_POOL):
            held.enter_context(registry.urgent_engine.connect())


def create_alarm_app(settings: Settings, *, registry: Registry) -> OnlyAlarmIngest:
    """The alarm listener's app: the hub ingest router behind :class:`OnlyAlarmIngest`, with the register's error
    replies, body budget and metrics (its acks counted in ``kotihub_register_alarm_listener_batches_total``)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.registry = registry
    budget = MemoryBudget(settings.body_budget_bytes)
    app.state.budget = budget
    fleet_metrics = metrics.instrument(app, registry, alarm_listener=True)
    app.add_middleware(BodyBudget, budget=budget)
    errors.install(app)
    lanes = LaneGate(settings.db_pool_size + settings.db_max_overflow, URGENT_POOL)
    app.include_router(hub_ingest.router(registry, Callers(settings, registry), fleet_metrics, lanes))
    return OnlyAlarmIngest(app)
