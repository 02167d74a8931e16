"""Prometheus metrics of the register (``prometheus-client``), served at ``GET /metrics`` to support/admin tokens.

Labels are aggregate only — lane, route template, method, status class, software version, statistic — never a
household or hub id, so a scrape reveals no household and the number of series does not grow with the fleet.

Two kinds of figures:

* counters this process keeps (requests by route and status class, request duration, ingested items by lane and
  outcome); they start at zero when the process starts, as Prometheus counters do; with several workers they are
  summed over the workers (prometheus-client's multiprocess mode) and start at zero when the register starts;
* gauges computed from the database at each scrape — the same in every register process: the fleet (hubs
  enrolled/online, lag per lane, hubs by version, hubs with a driver down or low disk, SD-card write volume), alarms
  reaching people (:mod:`.notify.metrics`: alarm-to-notification latency as a gauge histogram, notification outcomes,
  overdue jobs) and release rollouts (:mod:`.rollout_metrics`).
"""

import os
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_sync import protocol as p
from cloud_sync.register import db
from cloud_sync.register.auth import Principal
from cloud_sync.register.fleet import ONLINE_WINDOW_S, require_operator
from cloud_sync.register.notify.metrics import NotifyCollector
from cloud_sync.register.registry import Registry
from cloud_sync.register.rollout_metrics import RolloutCollector

LOW_DISK_FRACTION: Final = 0.10
ALARM_PING_BUCKETS_MS: Final = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
UNMATCHED: Final = "unmatched"
"""The route label of a request no route matched, so probing random paths cannot add series."""
MAX_VERSIONS: Final = 20
"""Versions by name, most common first; the rest are ``other``. The version is the hub's word: a hub that made one
up (its household id, say) must not get a series of its own unless it is among the most common."""
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other (the client chooses it) is counted as ``other``, for the same reason."""


class FleetCollector(Collector):
    """Fleet gauges, read from the database at scrape time (a handful of aggregate queries)."""

    def __init__(self, registry: Registry, online_window_s: float) -> None:
        self._reg = registry
        self._window = online_window_s

    def collect(self) -> Iterable[Metric]:
        h, hh = db.hubs, db.hub_health
        now = time.time()
        live = h.c.revoked.is_(False)
        with self._reg.engine.connect() as conn:
            enrolled = conn.execute(select(func.count()).select_from(h).where(live)).scalar_one()
            heard = func.coalesce(h.c.last_seen, 0.0)
            online = conn.execute(
                select(func.count()).select_from(h).where(live, heard >= now - self._window)
            ).scalar_one()
            joined = hh.join(h, h.c.id == hh.c.hub_id)
            lag_cols = [c for lane in p.LANES for c in (func.max(hh.c[f"lag_{lane}"]), func.sum(hh.c[f"lag_{lane}"]))]
            lag = conn.execute(select(*lag_cols).select_from(joined).where(live)).one()
            lagging = conn.execute(
                select(*(func.count(hh.c[f"lag_{lane}"]).filter(hh.c[f"lag_{lane}"] > 0) for lane in p.LANES))
                .select_from(joined)
                .where(live)
            ).one()
            versions = conn.execute(
                select(hh.c.version, func.count()).select_from(joined).where(live).group_by(hh.c.version)
            ).all()
            down = conn.execute(
                select(func.count()).select_from(joined).where(live, hh.c.drivers_down > 0)
            ).scalar_one()
            low_disk = conn.execute(
                select(func.count())
                .select_from(joined)
                .where(live, hh.c.disk_free_bytes < hh.c.disk_total_bytes * LOW_DISK_FRACTION)
            ).scalar_one()
            pinged = conn.execute(
                select(
                    func.count().filter(hh.c.alarm_failing.is_(True)),
                    *(func.count().filter(hh.c.alarm_ping_ms <= b) for b in ALARM_PING_BUCKETS_MS),
                    func.count(hh.c.alarm_ping_ms),
                    func.sum(hh.c.alarm_ping_ms),
                )
                .select_from(joined)
                .where(live)
            ).one()
            writes = conn.execute(
                select(func.max(hh.c.written_bytes_per_day), func.sum(hh.c.written_bytes_per_day))
                .select_from(joined)
                .where(live)
            ).one()

        g = GaugeMetricFamily("kotihub_register_hubs", "Enrolled hubs (not revoked).")
        g.add_metric([], enrolled)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_hubs_online", f"Hubs heard from within the last {self._window:.0f} seconds."
        )
        g.add_metric([], online)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_lane_lag_items",
            "Items hubs hold beyond what the register committed, as of their last heartbeat: max over hubs and sum.",
            labels=["lane", "stat"],
        )
        for i, lane in enumerate(p.LANES):
            g.add_metric([lane, "max"], lag[2 * i] or 0)
            g.add_metric([lane, "sum"], lag[2 * i + 1] or 0)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_hubs_lagging", "Hubs with items not yet committed, per lane.", labels=["lane"]
        )
        for lane, n in zip(p.LANES, lagging, strict=True):
            g.add_metric([lane], n or 0)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_hubs_by_version",
            "Hubs by the software version of their last heartbeat.",
            labels=["version"],
        )
        ranked = sorted(versions, key=lambda v: (-v[1], v[0]))
        for version, n in ranked[:MAX_VERSIONS]:
            g.add_metric([version], n)
        if len(ranked) > MAX_VERSIONS:
            g.add_metric(["other"], sum(n for _, n in ranked[MAX_VERSIONS:]))
        yield g
        g = GaugeMetricFamily("kotihub_register_hubs_driver_down", "Hubs with at least one driver not running.")
        g.add_metric([], down)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_hubs_low_disk", f"Hubs with less than {LOW_DISK_FRACTION:.0%} of their disk free."
        )
        g.add_metric([], low_disk)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_hubs_alarm_path_failing",
            "Hubs whose alarm path failed at their last heartbeat: the last ping failed, or the alarm listener rests.",
        )
        g.add_metric([], pinged[0])
        yield g
        hist = GaugeHistogramMetricFamily(
            "kotihub_register_hub_alarm_ping_ms",
            "Hubs by the round trip of their last alarm ping (ms): what an alarm on a kept connection pays on top of "
            "the register's work.",
        )
        counts = pinged[1 : 1 + len(ALARM_PING_BUCKETS_MS)]
        buckets = [(str(b), float(n)) for b, n in zip(ALARM_PING_BUCKETS_MS, counts, strict=True)]
        hist.add_metric([], [*buckets, ("+Inf", float(pinged[-2]))], float(pinged[-1] or 0.0))
        yield hist
        g = GaugeMetricFamily(
            "kotihub_register_hub_written_bytes_per_day",
            "Bytes hubs write to their storage per day (SD-card wear): max over hubs and sum.",
            labels=["stat"],
        )
        g.add_metric(["max"], writes[0] or 0)
        g.add_metric(["sum"], writes[1] or 0)
        yield g


class RegisterMetrics:
    """The register's metrics, in a registry of its own (one per app, so tests can run several registers)."""

    def __init__(
        self, registry: Registry, *, online_window_s: float = ONLINE_WINDOW_S, alarm_listener: bool = False
    ) -> None:
        self.registry = CollectorRegistry()
        self._alarm_listener = alarm_listener
        self.listener_batches = Counter(
            "kotihub_register_alarm_listener_batches",
            "Alarm batches acknowledged by the alarm listener (serve --alarm-port); the rest of "
            "ingest_batches{lane=alarm} came to the main port.",
            registry=self.registry,
        )
        self.requests = Counter(
            "kotihub_register_requests",
            "HTTP requests by route template, method and status class.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kotihub_register_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.items = Counter(
            "kotihub_register_ingest_items",
            "Lane items received: stored now, or duplicates of items held already (or erased).",
            ["lane", "outcome"],
            registry=self.registry,
        )
        self.batches = Counter(
            "kotihub_register_ingest_batches", "Ingest batches acknowledged.", ["lane"], registry=self.registry
        )
        for lane in p.LANES:  # every lane from the start, so rate() works from the first scrape
            self.batches.labels(lane)
            for outcome in ("stored", "duplicate"):
                self.items.labels(lane, outcome)
        self._from_database: list[Collector] = [
            FleetCollector(registry, online_window_s),
            NotifyCollector(registry.engine),
            RolloutCollector(registry.engine),
        ]
        for collector in self._from_database:
            self.registry.register(collector)

    def ingested(self, ack: p.IngestAck) -> None:
        if ack.lane not in p.LANES:
            return
        self.batches.labels(ack.lane).inc()
        if self._alarm_listener:
            self.listener_batches.inc()
        self.items.labels(ack.lane, "stored").inc(ack.stored)
        self.items.labels(ack.lane, "duplicate").inc(ack.duplicates)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        # Several workers (cloud_sync.register.workers) write their counters to files there; whichever worker
        # is scraped sums them all, so a scrape through the load balancer sees the whole register.
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        for collector in self._from_database:
            merged.register(collector)
        return generate_latest(merged)


def instrument(app: FastAPI, registry: Registry, *, alarm_listener: bool = False) -> RegisterMetrics:
    """Attach the metrics to ``app``: the request middleware now; the route comes with :func:`router`.
    ``alarm_listener``: the app of the alarm listener, whose acks are also counted apart."""
    m = RegisterMetrics(registry, alarm_listener=alarm_listener)
    app.add_middleware(_Middleware, metrics=m)
    return m


class _Middleware:
    """Counts every HTTP request by the route template it matched (never the path, which holds ids)."""

    def __init__(self, app: ASGIApp, metrics: RegisterMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            # The router put the matched route in the scope; its path is the template.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            self._metrics.requests.labels(route, method, f"{status // 100}xx").inc()
            self._metrics.duration.labels(route).observe(time.perf_counter() - started)


def router(metrics: RegisterMetrics, principal: Callable[[Request], Principal]) -> APIRouter:
    """``GET /metrics``: support and admin tokens only (Prometheus sends one with ``authorization``). Not audited:
    it carries no household's data, and a scrape every few seconds would drown the audit log."""
    r = APIRouter()

    @r.get("/metrics", include_in_schema=False)
    async def get_metrics(who: Annotated[Principal, Depends(principal)]) -> Response:
        require_operator(who, "metrics")
        body: Any = await run_in_threadpool(metrics.exposition)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return r
