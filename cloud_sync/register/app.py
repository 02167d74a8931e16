"""The register's HTTP API (FastAPI): hub endpoints (mTLS) and household/operator endpoints (bearer tokens).

A composition root: one router per resource (:mod:`cloud_sync.register.routes`), the dependencies they share
(:mod:`.routes.common`: who is calling, bounded bodies) and the error replies (:mod:`.routes.errors`). Blocking
database work runs in the thread pool.
"""

from typing import Any

from fastapi import FastAPI

from cloud_sync import protocol as p
from cloud_sync.register import fleet, hubexports, metrics, releases, wakeups, watching, webapp
from cloud_sync.register.alarm_listener import AnnounceAlarmURL
from cloud_sync.register.budget import MemoryBudget
from cloud_sync.register.lanegate import LaneGate
from cloud_sync.register.notify import routes as notify_routes
from cloud_sync.register.openapi import document
from cloud_sync.register.registry import URGENT_POOL, Registry
from cloud_sync.register.routes import clips, commands, enroll, erasures, errors, households, hub_ingest, members
from cloud_sync.register.routes.common import BodyBudget, Callers, decode_json, read_body
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp.context import WebContext

__all__ = ["create_app", "decode_json", "read_body"]  # the body helpers, for routers kept outside routes/

_SCHEMA_TYPES: tuple[Any, ...] = (
    p.EnrollRequest,
    p.EnrollResponse,
    p.RenewRequest,
    p.RenewResponse,
    p.IngestBatch,
    p.ReadingColumns,
    p.IngestAck,
    p.DeviceRecord,
    p.DevicesAck,
    p.ErasureRequest,
    p.ClipRecord,
    p.ClipUploadStatus,
    p.ClipAbandoned,
    p.Command,
    p.CommandResult,
    p.CommandRequest,
    p.MemberCreate,
    p.SignedMemberList,
    p.MemberLogEntry,
    p.MemberRequest,
    p.MemberRequestRecord,
    p.MemberUpdate,
    p.Member,
    p.ConsentUpdate,
    p.Consent,
    p.ErrorBody,
    p.Health,
    *notify_routes.SCHEMA_TYPES,
    p.Heartbeat,
)


def create_app(settings: Settings, *, registry: Registry | None = None) -> FastAPI:
    """The register app. Hub endpoints need the verified client certificate in the ASGI TLS extension
    (``scope["extensions"]["tls"]["client_cert_chain"]``), which :mod:`cloud_sync.register.server` provides."""
    reg = registry or Registry(settings)
    # Which households have the app open (live mode), in memory; other processes hear marks by NOTIFY.
    watched = watching.Watching(reg.engine)
    # Wakes a hub's long-poll when a command is queued or its household is watched, in this process or (PostgreSQL
    # LISTEN/NOTIFY) another.
    notifier = wakeups.Wakeups(
        reg.engine, retry_s=settings.command_poll_interval_s, channels={watching.CHANNEL: watched.heard}
    )
    budget = MemoryBudget(settings.body_budget_bytes)
    callers = Callers(settings, reg)
    app = FastAPI(
        title="kotihub register",
        version=str(p.PROTOCOL_VERSION),
        openapi_url=f"{p.API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = reg
    app.state.notifier = notifier
    app.state.watching = watched
    app.state.metrics = fleet_metrics = metrics.instrument(app, reg)
    app.state.budget = budget
    app.add_middleware(BodyBudget, budget=budget)
    if settings.alarm_port is not None:
        app.add_middleware(AnnounceAlarmURL, port=settings.alarm_port)
    errors.install(app)

    # The routes every hub calls all day first: a request is matched against the routes in order, each included
    # router walked in turn, so these are matched in a few microseconds rather than after the rest (bench/
    # route_match.py). No two routes match the same request, so the order changes nothing else.
    lanes = LaneGate(settings.db_pool_size, URGENT_POOL, bulk_limit=settings.bulk_ingest_limit)
    app.include_router(hub_ingest.router(reg, callers, fleet_metrics, lanes))
    app.include_router(commands.router(reg, settings, callers, notifier, watched))
    # Hubs (mTLS) and the operator's fleet view.
    app.include_router(fleet.router(reg, hub=callers.hub, principal=callers.principal))
    app.include_router(metrics.router(fleet_metrics, callers.principal))
    # Signed releases and remote configuration for hubs (TUF metadata, rollout assignment, outcomes; docs/updates.md).
    app.include_router(releases.router(reg, hub=callers.hub))
    app.include_router(releases.config_router(reg, hub=callers.hub))
    app.include_router(enroll.router(reg, settings, callers))
    # Resources both sides reach: hubs with their certificate, households and operators with a bearer token.
    app.include_router(clips.router(reg, callers))
    app.include_router(erasures.router(reg, callers, notifier))
    # Households and operators.
    app.include_router(households.router(reg, callers))
    app.include_router(members.router(reg, callers, notifier))
    app.include_router(notify_routes.make_router(reg, callers.scoped, read_body))
    # The hub's sealed copy of its data for the household ("ask the hub" on Näytä tietoni; ciphertext only).
    app.include_router(hubexports.router(reg, hub=callers.hub, read_body=read_body, scoped=callers.scoped))
    # The household's app (server-rendered pages under /app, passkey sessions; not in the API document).
    app.include_router(webapp.router(WebContext.create(reg, settings, watched=watched, wake=notifier.notify)))
    app.mount(webapp.STATIC_PATH, webapp.static_files())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(
                app, _SCHEMA_TYPES, hub=(callers.hub, callers.hub_certificate), bearer=callers.principal
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
