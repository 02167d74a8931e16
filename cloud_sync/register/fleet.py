"""The fleet at a glance: each hub's latest heartbeat, kept per hub, and the operator's view of all hubs.

A heartbeat (``PUT /v1/heartbeat``) overwrites the hub's row in ``hub_health``; the register adds what only it
knows, the lag per lane: items the hub holds beyond the newest the register committed (or acknowledged without
keeping, as for an erased household or a dead letter, which the hub's acknowledged cursor shows). Lag is therefore
as of the last heartbeat.

Reading the fleet (``GET /v1/fleet``, ``kotihub-register fleet``) is an operator read: support and admin roles
only, audited as ``fleet.read`` like any other operator read.
"""

import time
from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.sql.dml import Insert
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from cloud_sync import protocol as p
from cloud_sync.register import chunks, db
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.errors import Forbidden, Invalid
from cloud_sync.register.registry import Registry, write_audit

ONLINE_WINDOW_S: Final = 900.0
"""A hub heard from within this many seconds is online: three missed heartbeats at the default interval."""
OPERATOR_ROLES: Final = frozenset({"support", "admin"})
RUNNING_STATES: Final = frozenset({"running", "starting"})


def online_minutes(text: str) -> float:
    """``--online-minutes``: a positive number of minutes, at most a week."""
    value = float(text)
    if not 0 < value <= 10_080:
        raise ValueError(text)
    return value


def require_operator(who: Principal, what: str) -> None:
    """Fleet-wide reads are for the operator's staff only; a household token sees its own hubs elsewhere."""
    if who.role not in OPERATOR_ROLES:
        raise Forbidden(f"role {who.role!r} may not read {what}", code="role_forbidden")


def _committed_query(*, with_chunks: bool = False) -> Select[Any]:
    """The newest seq the register holds for a hub (``:hub_id``), one column per lane in :data:`p.LANES` order;
    one statement (five index lookups), built once. ``with_chunks``: readings stored in chunks count too
    (PostgreSQL, :mod:`.chunks`: the hub's greatest ``seq_last``, one more lookup in ``(hub_id, seq_last)``)."""
    columns = []
    for lane in p.LANES:
        table = db.LANE_TABLES[lane]
        q = select(func.max(table.c.seq)).where(table.c.hub_id == bindparam("hub_id"))
        if table is db.events:
            q = q.where(table.c.lane == lane)
        column: Any = q.scalar_subquery()
        if table is db.readings and with_chunks:
            c = chunks.reading_chunks.c
            in_chunks = select(func.max(c.seq_last)).where(c.hub_id == bindparam("hub_id")).scalar_subquery()
            column = func.greatest(column, in_chunks)  # NULLs ignored
        columns.append(column)
    return select(*columns)


_COMMITTED: Final = _committed_query()
_COMMITTED_CHUNKS: Final = _committed_query(with_chunks=True)
_UPSERTS: dict[str, Insert] = {}


def _alarm_failing(path: p.AlarmPathHealth | None) -> bool | None:
    """The last ping failed, or the listener rests after a failure (alarms then go to the main URL: they still
    arrive, but the path the operator set up for them does not work). None: a hub that does not say."""
    if path is None:
        return None
    return path.failing or path.listener == "resting"


def record_heartbeat(registry: Registry, hub: HubIdentity, hb: p.Heartbeat, *, now: float | None = None) -> None:
    """Keep ``hb`` as the hub's latest health, with the lag per lane the register sees."""
    now = time.time() if now is None else now
    lags: dict[str, int] = {}
    with registry.engine.begin() as conn:
        committed = conn.execute(
            _COMMITTED_CHUNKS if chunks.available(conn) else _COMMITTED, {"hub_id": hub.hub_id}
        ).one()
        for lane, newest in zip(p.LANES, committed, strict=True):
            reported = hb.lanes.get(lane)  # type: ignore[call-overload]
            if reported is None:
                lags[lane] = 0
                continue
            # Hub seqs start at 1, so "nothing held" is 0.
            lags[lane] = max(0, reported.newest_seq - max(newest or 0, reported.acked_seq))
        row = {
            "hub_id": hub.hub_id,
            "household_id": hub.household_id,
            "received_at": now,
            "version": hb.version,
            "uptime_s": hb.uptime_s,
            "disk_free_bytes": hb.disk_free_bytes,
            "disk_total_bytes": hb.disk_total_bytes,
            "store_bytes": hb.store_bytes,
            "written_bytes_per_day": hb.written_bytes_per_day,
            "drivers_down": sum(1 for d in hb.drivers.values() if d.state not in RUNNING_STATES),
            **{f"lag_{lane}": lag for lane, lag in lags.items()},
            "alarm_ping_ms": hb.alarm_path.ping_ms if hb.alarm_path is not None else None,
            "alarm_failing": _alarm_failing(hb.alarm_path),
            "body": msgspec.to_builtins(hb),
        }
        upsert = _UPSERTS.get(conn.dialect.name)
        if upsert is None:
            upsert = _UPSERTS[conn.dialect.name] = db.upsert(
                registry.engine, db.hub_health, [k for k in row if k != "hub_id"]
            )
        conn.execute(upsert, row)


def fleet(
    registry: Registry, *, actor: str, online_window_s: float = ONLINE_WINDOW_S, now: float | None = None
) -> list[dict[str, Any]]:
    """Every enrolled (not revoked) hub with its latest health, most recently heard first; audited."""
    now = time.time() if now is None else now
    h, hh = db.hubs, db.hub_health
    q = (
        select(h.c.id, h.c.household_id, h.c.last_seen, *(c for c in hh.c if c.name not in ("hub_id", "household_id")))
        .select_from(h.outerjoin(hh, hh.c.hub_id == h.c.id))
        .where(h.c.revoked.is_(False))
        .order_by(h.c.last_seen.desc().nulls_last(), h.c.id)
    )
    out: list[dict[str, Any]] = []
    with registry.engine.begin() as conn:
        for r in conn.execute(q).mappings():
            heard = max(r["last_seen"] or 0.0, r["received_at"] or 0.0) or None
            body = r["body"] or {}
            out.append(
                {
                    "hub_id": r["id"],
                    "household_id": r["household_id"],
                    "online": heard is not None and now - heard <= online_window_s,
                    "last_heard": heard,
                    "last_heartbeat": r["received_at"],
                    "version": r["version"],
                    "uptime_s": r["uptime_s"],
                    "disk_free_bytes": r["disk_free_bytes"],
                    "disk_total_bytes": r["disk_total_bytes"],
                    "store_bytes": r["store_bytes"],
                    "written_bytes_per_day": r["written_bytes_per_day"],
                    "lag": {lane: r[f"lag_{lane}"] for lane in p.LANES} if r["received_at"] is not None else {},
                    "drivers": {k: v.get("state", "") for k, v in body.get("drivers", {}).items()},
                    "alarm_path": body.get("alarm_path"),
                }
            )
        write_audit(conn, actor, "fleet.read", None, hubs=len(out))
    return out


def router(
    registry: Registry,
    *,
    hub: Callable[[Request], HubIdentity],
    principal: Callable[[Request], Principal],
) -> APIRouter:
    """``PUT /v1/heartbeat`` for hubs (mTLS) and ``GET /v1/fleet`` for the operator's staff."""
    from cloud_sync.register.app import decode_json, read_body  # the app's bounded body helpers

    r = APIRouter()

    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Heartbeat"}}}}

    @r.put("/v1/heartbeat", status_code=204, openapi_extra={"requestBody": body})
    async def heartbeat(request: Request, who: Annotated[HubIdentity, Depends(hub)]) -> Response:
        hb = decode_json(await read_body(request, p.MAX_HEARTBEAT_BYTES), p.Heartbeat)
        await run_in_threadpool(record_heartbeat, registry, who, hb)
        return Response(status_code=204)

    @r.get("/v1/fleet")
    def get_fleet(
        request: Request,
        who: Annotated[Principal, Depends(principal)],
        online_minutes: Annotated[float, Query(gt=0, le=10_080)] = ONLINE_WINDOW_S / 60,
    ) -> Response:
        require_operator(who, "the fleet")
        unknown = sorted(set(request.query_params) - {"online_minutes"})
        if unknown:  # a mistyped option must not silently show the default view
            raise Invalid(f"unknown query parameter(s): {', '.join(unknown)[:200]}", code="unknown_parameter")
        rows = fleet(registry, actor=who.actor, online_window_s=online_minutes * 60)
        return Response(content=msgspec.json.encode(rows), media_type="application/json")

    return r


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    s = max(0.0, now - at)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _alarm_path(path: dict[str, Any] | None) -> str:
    """``FAILING`` (the last ping failed), ``main URL`` (the listener rests), or the last ping's round trip, with
    ``kept`` when the connection is held open between alarms; ``-`` from a hub that does not say."""
    if not path:
        return "-"
    if path.get("failing"):
        return "FAILING"
    if path.get("listener") == "resting":
        return "main URL"
    ms = path.get("ping_ms")
    rtt = f"{ms:.0f} ms" if isinstance(ms, int | float) else "no ping"
    return f"{rtt} kept" if path.get("kept_open") else rtt


def table(rows: list[dict[str, Any]], *, now: float | None = None) -> str:
    """The fleet as a fixed-width text table, one hub a line; lag is alarm/events/readings/clips/diagnostics."""
    now = time.time() if now is None else now
    head = ("HUB", "STATE", "LAST HEARD", "VERSION", "LAG a/e/r/c/d", "ALARM", "DISK FREE", "WRITES/DAY", "DRIVERS")
    lines = [head]
    for r in rows:
        lag = "/".join(str(r["lag"].get(lane, 0)) for lane in p.LANES) if r["lag"] else "-"
        disk = f"{_size(r['disk_free_bytes'])}/{_size(r['disk_total_bytes'])}" if r["disk_total_bytes"] else "-"
        drivers = ",".join(f"{k}:{v}" for k, v in sorted(r["drivers"].items())) or "-"
        lines.append(
            (
                r["hub_id"],
                "online" if r["online"] else "OFFLINE",
                _ago(r["last_heard"], now),
                r["version"] or "-",
                lag,
                _alarm_path(r["alarm_path"]),
                disk,
                _size(r["written_bytes_per_day"]),
                drivers,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    out = ["  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)), line[-1]]) for line in lines]
    online = sum(1 for r in rows if r["online"])
    out.append(f"{len(rows)} hubs, {online} online, {len(rows) - online} offline")
    return "\n".join(out)
