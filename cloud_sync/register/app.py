"""The register's HTTP API (FastAPI): hub endpoints (mTLS) and household/operator endpoints (bearer tokens).

Bodies are decoded with msgspec from a size-bounded read, so every error names the offending field and no
request can make the register buffer more than its limit. Blocking database work runs in the thread pool.
"""

import hashlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from cloud_sync import protocol as p
from cloud_sync.register import clips, export, fleet, ingest, jsonshape, memberlog, metrics, retention, wakeups, webapp
from cloud_sync.register.auth import HubIdentity, Principal, require
from cloud_sync.register.budget import Lease, MemoryBudget
from cloud_sync.register.errors import Busy, Forbidden, Invalid, RegisterError, TooLarge, Unauthenticated
from cloud_sync.register.hubexports import router as hub_exports_router
from cloud_sync.register.notify import routes as notify_routes
from cloud_sync.register.openapi import CLIP_ID_PATTERN, document
from cloud_sync.register.ratelimit import Limiter, Rate
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp.context import WebContext

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLIP_ID = re.compile(CLIP_ID_PATTERN)
_JSON = "application/json"


# Commands a household app or an operator may queue; member_keys and config are the register's own.
API_COMMAND_KINDS = ("erase", "export", "restrict")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(content=msgspec.json.encode(obj), status_code=status, media_type=_JSON)


def _error(status: int, code: str, detail: str, **extra: Any) -> Response:
    body: dict[str, Any] = {"error": code, "detail": detail, **extra}
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=_JSON)


class BodyBudget:
    """ASGI middleware: each request gets a :class:`Lease` on the register's budget for bodies, given back when
    the request ends; :func:`read_body` and inflating hold their bytes in it."""

    def __init__(self, app: Any, budget: MemoryBudget) -> None:
        self.app, self.budget = app, budget

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.budget.lease() as lease:
            scope["kotihub.lease"] = lease
            await self.app(scope, receive, send)


def _lease(request: Request) -> Lease:
    lease = request.scope.get("kotihub.lease")
    if lease is None:  # an app served without the middleware (never in production): an unlimited private budget
        lease = MemoryBudget(2**62).lease()
        request.scope["kotihub.lease"] = lease
    return lease


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before buffering them; every buffered byte is
    held in the request's lease (503 ``busy`` while the register's budget for bodies is spent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise Invalid("Content-Length is not a number", status=400) from None
        if length > limit:
            raise TooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    lease = _lease(request)
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
        lease.take(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(data: bytes, typ: type[T]) -> T:
    """Decode a JSON body into ``typ``: 400 if it is not JSON, 422 if it does not fit ``typ`` or breaks the depth and
    size limits of :mod:`jsonshape` (free-form fields included)."""
    try:
        value = msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid body: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8 in a string
        raise Invalid(f"body is not valid JSON: {exc}", status=400, code="bad_json") from exc
    except RecursionError:
        raise Invalid(f"body is nested deeper than {jsonshape.MAX_DEPTH} levels", code="too_deep") from None
    jsonshape.check(value)
    return value


def _clip_id(clip_id: str) -> str:
    if not _CLIP_ID.fullmatch(clip_id):
        raise Invalid(
            "clip_id must be 1-128 characters of A-Z a-z 0-9 _ . -, at least one a letter or digit", status=400
        )
    return clip_id


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _doc(
    body: str | None = None,
    resp: str | None = None,
    *,
    media: str = _JSON,
    array: bool = False,
    resp_array: bool = False,
    status: int = 200,
    errors: dict[int, str] | None = None,
) -> dict[str, Any]:
    """OpenAPI fragments for msgspec-typed bodies (FastAPI cannot see them since we decode by hand); ``errors``
    documents 4xx replies (each an ``ErrorBody``; the text lists the ``error`` codes)."""
    extra: dict[str, Any] = {}
    if body is not None:
        schema = {"type": "array", "items": _ref(body)} if array else _ref(body)
        extra["requestBody"] = {"required": True, "content": {media: {"schema": schema}}}
    responses: dict[str, Any] = {}
    if resp is not None:
        schema = {"type": "array", "items": _ref(resp)} if resp_array else _ref(resp)
        responses[str(status)] = {"description": "OK", "content": {_JSON: {"schema": schema}}}
    for code, text in (errors or {}).items():
        responses[str(code)] = {"description": text, "content": {_JSON: {"schema": _ref("ErrorBody")}}}
    if responses:
        extra["responses"] = responses
    return extra


_SCHEMA_TYPES: tuple[Any, ...] = (
    p.EnrollRequest,
    p.EnrollResponse,
    p.RenewRequest,
    p.RenewResponse,
    p.IngestBatch,
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
    notifier = wakeups.Wakeups(reg.engine, retry_s=settings.command_poll_interval_s)
    budget = MemoryBudget(settings.body_budget_bytes)
    limiter = Limiter()
    # Refilled over ten minutes; a household (reached from many addresses) gets five sources' worth.
    auth_rate = Rate(settings.auth_failure_burst, settings.auth_failure_burst / 600)
    auth_rate_hh = Rate(5 * settings.auth_failure_burst, 5 * settings.auth_failure_burst / 600)
    enroll_rate = Rate(settings.enroll_burst, settings.enroll_burst / 600)
    enroll_rate_hh = Rate(5 * settings.enroll_burst, 5 * settings.enroll_burst / 600)
    app = FastAPI(
        title="kotihub register",
        version=str(p.PROTOCOL_VERSION),
        openapi_url=f"{p.API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = reg
    app.state.notifier = notifier
    app.state.metrics = fleet_metrics = metrics.instrument(app, reg)
    app.state.budget = budget
    app.add_middleware(BodyBudget, budget=budget)

    # ------------------------------------------------------------------------------------------- errors

    @app.exception_handler(RegisterError)
    async def _register_error(_: Request, exc: RegisterError) -> Response:
        extra = {"offset": exc.offset} if isinstance(exc, clips.OffsetConflict) else {}
        resp = _error(exc.status, exc.code, str(exc), **extra)
        if isinstance(exc, Busy):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    @app.exception_handler(p.ProtocolError)
    async def _protocol_error(_: Request, exc: p.ProtocolError) -> Response:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> Response:
        # A value msgspec let through but the database refuses; the value itself is not echoed (personal data).
        log.warning("database rejected a value: %s", type(exc.orig).__name__)
        return _error(422, "invalid", f"a value was rejected by the database ({type(exc.orig).__name__})")

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        # A hub's connection cut mid-body (a flaky uplink, the hub restarting): nothing was stored, the hub resumes
        # from the offset it asks for. Routine, so no traceback; there is nobody left to answer.
        log.info("a client disconnected before sending its whole request (%s)", request.url.path.split("/")[2])
        return _error(400, "client_disconnected", "the request body was cut off")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return _error(422, "invalid", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        resp = _error(exc.status_code, "http_error", str(exc.detail))
        if exc.headers:
            resp.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only, not of all of them.
            scope = {**request.scope, "method": ""}
            matching = [r for r in app.routes if isinstance(r, APIRoute) and r.matches(scope)[0] != Match.NONE]
            allowed = {m for r in matching for m in r.methods or ()}
            resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp

    # -------------------------------------------------------------------------------------- who is calling

    def source(request: Request) -> str:
        return request.client.host if request.client else ""

    def hub(request: Request) -> HubIdentity:
        src = ("src", source(request))
        limiter.check(src, auth_rate, "failed authentications from this address")
        tls = request.scope.get("extensions", {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or []
        try:
            if not chain:
                raise Unauthenticated("a client certificate issued at enrollment is required", code="no_client_cert")
            household_id, hub_id = reg.ca.hub_identity(chain[0].encode())
            der = ssl.PEM_cert_to_DER_cert(chain[0])
            identity = HubIdentity(
                hub_id=hub_id, household_id=household_id, cert_sha256=hashlib.sha256(der).hexdigest()
            )
            reg.check_hub(identity)
        except (Unauthenticated, Forbidden):
            limiter.spend(src, auth_rate)
            raise
        return identity

    def principal(request: Request) -> Principal:
        src = ("src", source(request))
        target = request.path_params.get("h")
        hh = ("hh", str(target)) if target else None
        limiter.check(src, auth_rate, "failed authentications from this address")
        if hh is not None:
            limiter.check(hh, auth_rate_hh, "failed authentications for this household")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("an 'Authorization: Bearer <token>' header is required", code="no_token")
            if len(token) > 256:
                raise Unauthenticated("unknown or revoked API token", code="bad_token")
            return reg.principal(token.strip())
        except Unauthenticated:
            limiter.spend(src, auth_rate)
            if hh is not None:
                limiter.spend(hh, auth_rate_hh)
            raise

    def operator_read(who: Principal, action: str, h: str) -> None:
        """Audit an operator's read before the data is read (a read that fails after it is still on record). Reads
        whose registry function audits in its own transaction (members, consents, devices, readings, events,
        export) do not call this."""
        if who.is_operator:
            reg.audit(who.actor, action, h)

    Hub = Annotated[HubIdentity, Depends(hub)]
    Who = Annotated[Principal, Depends(principal)]

    app.include_router(fleet.router(reg, hub=hub, principal=principal))
    app.include_router(metrics.router(fleet_metrics, principal))

    def scoped(permission: str) -> Callable[[str, Principal], Principal]:
        def dep(h: str, who: Who) -> Principal:
            require(who, permission, h)
            # Every household route answers 404 for a household that does not exist, before anything is read or
            # audited (an operator's "read" of nothing is no read).
            with reg.engine.connect() as conn:
                reg.require_household(conn, h)
            return who

        return dep

    # ---------------------------------------------------------------------------------------------- hubs

    @app.get("/v1/health", openapi_extra=_doc(resp="Health"))
    async def health() -> Response:
        return _json(p.Health(status="ok"))

    @app.post("/v1/enroll", openapi_extra=_doc("EnrollRequest", "EnrollResponse"))
    async def enroll(request: Request) -> Response:
        # Every attempt counts, not only failures: a token is a secret to guess, and each try signs a CSR.
        src = ("src", source(request))
        limiter.check(src, enroll_rate, "enrollment attempts from this address")
        limiter.spend(src, enroll_rate)
        req = decode_json(await read_body(request, 64 * 1024), p.EnrollRequest)
        household_id = await run_in_threadpool(reg.enroll_token_household, req.token)
        if household_id is not None:
            hh = ("hh-enroll", household_id)
            limiter.check(hh, enroll_rate_hh, "enrollment attempts for this household")
            limiter.spend(hh, enroll_rate_hh)
        return _json(await run_in_threadpool(reg.enroll, req))

    @app.post("/v1/ingest/{lane}", openapi_extra=_doc("IngestBatch", "IngestAck", media=p.MSGPACK_CONTENT_TYPE))
    async def ingest_lane(lane: str, request: Request, who: Hub) -> Response:
        if lane not in p.LANES:
            raise Invalid(f"unknown lane {lane!r}; expected one of {', '.join(p.LANES)}", status=404, code="no_lane")
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding != p.ZSTD_ENCODING:
            raise Invalid("ingest bodies must be sent with 'Content-Encoding: zstd'", status=415, code="encoding")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != p.MSGPACK_CONTENT_TYPE:
            raise Invalid(f"ingest bodies must be {p.MSGPACK_CONTENT_TYPE}", status=415, code="content_type")
        body = await read_body(request, p.MAX_INGEST_COMPRESSED_BYTES)
        # The memory inflating may take is held before inflating: the size the frame declares (inflating stops
        # there), or twice the per-request limit for a frame that declares none (honest hubs always declare it).
        _lease(request).take(p.inflate_cost(body))
        ack = await run_in_threadpool(ingest.ingest_body, reg, who, lane, body)
        fleet_metrics.ingested(ack)
        return _json(ack)

    @app.post("/v1/renew", openapi_extra=_doc("RenewRequest", "RenewResponse"))
    async def renew(request: Request, who: Hub) -> Response:
        req = decode_json(await read_body(request, 64 * 1024), p.RenewRequest)
        return _json(await run_in_threadpool(reg.renew, who, req.csr_pem))

    @app.post("/v1/devices", openapi_extra=_doc("DeviceRecord", "DevicesAck", array=True))
    async def post_devices(request: Request, who: Hub) -> Response:
        records: list[p.DeviceRecord] = decode_json(
            await read_body(request, p.MAX_JSON_BODY_BYTES),
            Annotated[list[p.DeviceRecord], msgspec.Meta(max_length=p.MAX_DEVICES)],  # type: ignore[arg-type]
        )
        n = await run_in_threadpool(ingest.upsert_devices, reg, who, records)
        return _json(p.DevicesAck(upserted=n))

    @app.get("/v1/member-log", openapi_extra=_doc(resp="MemberLogEntry", resp_array=True))
    def hub_member_log(who: Hub, after: Annotated[int, Query(ge=0, le=2**31)] = 0) -> Response:
        """The household's signed member list versions after ``after`` (the hub verifies them itself)."""
        return _json(memberlog.entries(reg, who.household_id, after=after, limit=memberlog.MAX_PAGE))

    @app.put("/v1/clips/{clip_id}", openapi_extra=_doc("ClipRecord", "ClipUploadStatus"))
    async def clip_create(clip_id: str, request: Request, who: Hub) -> Response:
        clip_id = _clip_id(clip_id)
        rec = decode_json(await read_body(request, 16 * 1024), p.ClipRecord)
        return _json(await run_in_threadpool(clips.create, reg, who, clip_id, rec))

    @app.patch("/v1/clips/{clip_id}", openapi_extra=_doc(resp="ClipUploadStatus"))
    async def clip_append(
        clip_id: str, request: Request, who: Hub, offset: Annotated[int, Query(ge=0, le=p.MAX_CLIP_SIZE_BYTES)]
    ) -> Response:
        clip_id = _clip_id(clip_id)
        data = await read_body(request, p.MAX_CLIP_CHUNK_BYTES)
        return _json(await run_in_threadpool(clips.append, reg, who, clip_id, offset, data))

    @app.delete("/v1/clips/{clip_id}", openapi_extra=_doc(resp="ClipAbandoned"))
    async def clip_abandon(clip_id: str, who: Hub) -> Response:
        return _json(await run_in_threadpool(clips.abandon, reg, who, _clip_id(clip_id)))

    @app.get("/v1/clips/{clip_id}/status", openapi_extra=_doc(resp="ClipUploadStatus"))
    def clip_status(clip_id: str, who: Hub) -> Response:
        return _json(clips.status(reg, who, _clip_id(clip_id)))

    @app.get("/v1/commands")
    async def get_commands(who: Hub, wait: Annotated[float, Query(ge=0, le=p.MAX_COMMAND_WAIT_S)] = 0.0) -> Response:
        deadline = time.monotonic() + wait
        while True:
            pending = await run_in_threadpool(reg.pending_commands, who)
            remaining = deadline - time.monotonic()
            if pending or remaining <= 0 or notifier.closing:
                return _json(pending)
            await notifier.wait(min(remaining, settings.command_poll_interval_s), who.hub_id)

    @app.post("/v1/commands/{command_id}/result", openapi_extra=_doc("CommandResult"))
    async def command_result(command_id: str, request: Request, who: Hub) -> Response:
        result = decode_json(await read_body(request, p.MAX_JSON_BODY_BYTES), p.CommandResult)
        await run_in_threadpool(reg.command_result, who, command_id, result)
        return _json({"ok": True})

    @app.post("/v1/erasures", openapi_extra=_doc("ErasureRequest"))
    async def hub_erasure(request: Request, who: Hub) -> Response:
        req = decode_json(await read_body(request, p.MAX_JSON_BODY_BYTES), p.ErasureRequest)
        receipt = await run_in_threadpool(retention.erase_from_hub, reg, who, req)
        notifier.notify()
        return _json(receipt)

    # ------------------------------------------------------------------------------- household & operators

    @app.get("/v1/households/{h}")
    def household(h: str, who: Annotated[Principal, Depends(scoped("household.read"))]) -> Response:
        operator_read(who, "household.read", h)
        return _json(reg.household(h))

    @app.get("/v1/households/{h}/members")
    def list_members(h: str, who: Annotated[Principal, Depends(scoped("members.read"))]) -> Response:
        return _json(reg.members(h, reader=who))

    @app.post("/v1/households/{h}/members", status_code=201, openapi_extra=_doc("MemberCreate", "Member", status=201))
    async def add_member(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        m = decode_json(await read_body(request, 16 * 1024), p.MemberCreate)
        member = await run_in_threadpool(
            lambda: reg.add_member(h, m.name, m.recipient, email=m.email, phone=m.phone, actor=who.actor)
        )
        notifier.notify()
        return _json(member, 201)

    @app.patch("/v1/households/{h}/members/{member_id}", status_code=204, openapi_extra=_doc("MemberUpdate"))
    async def rectify_member(
        h: str, member_id: str, request: Request, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        u = decode_json(await read_body(request, 16 * 1024), p.MemberUpdate)
        changes = {k: v for k, v in msgspec.structs.asdict(u).items() if v is not None}
        await run_in_threadpool(lambda: reg.update_member(h, member_id, changes, actor=who.actor))
        return Response(status_code=204)

    @app.delete("/v1/households/{h}/members/{member_id}", status_code=204)
    async def remove_member(
        h: str, member_id: str, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        await run_in_threadpool(lambda: reg.remove_member(h, member_id, actor=who.actor))
        notifier.notify()
        return Response(status_code=204)

    # The signed member list: only a member's key can extend it; see docs/members.md.
    @app.get(
        "/v1/households/{h}/member-log",
        openapi_extra=_doc(resp="MemberLogEntry", resp_array=True, errors={404: "no such household"}),
    )
    def get_member_log(
        h: str,
        who: Annotated[Principal, Depends(scoped("members.read"))],
        after: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=memberlog.MAX_PAGE)] = 100,
    ) -> Response:
        out = memberlog.entries(reg, h, after=after, limit=limit)
        if who.is_operator:
            reg.audit(who.actor, "member_log.read", h)
        return _json(out)

    @app.post(
        "/v1/households/{h}/member-log",
        status_code=201,
        openapi_extra=_doc(
            "SignedMemberList",
            "MemberLogEntry",
            status=201,
            errors={
                404: "no such household",
                409: "not the next version: member_list_stale (that number exists), member_list_gap, member_list_fork",
                422: "member_list_malformed, member_list_bad_signature (not signed by a current member), "
                "member_list_household",
            },
        ),
    )
    async def append_member_log(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("members.change"))]
    ) -> Response:
        signed = decode_json(await read_body(request, 32 * 1024), p.SignedMemberList)
        entry = await run_in_threadpool(lambda: memberlog.append(reg, h, signed, actor=who.actor))
        notifier.notify()
        return _json(entry, 201)

    @app.get("/v1/households/{h}/member-requests", openapi_extra=_doc(resp="MemberRequestRecord", resp_array=True))
    def get_member_requests(h: str, who: Annotated[Principal, Depends(scoped("members.read"))]) -> Response:
        out = memberlog.requests(reg, h)
        if who.is_operator:
            reg.audit(who.actor, "member_requests.read", h)
        return _json(out)

    @app.post(
        "/v1/households/{h}/member-requests",
        status_code=201,
        openapi_extra=_doc(
            "MemberRequest",
            "MemberRequestRecord",
            status=201,
            errors={404: "no such household", 409: "too_many_requests"},
        ),
    )
    async def post_member_request(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("members.request"))]
    ) -> Response:
        req = decode_json(await read_body(request, 4096), p.MemberRequest)
        return _json(await run_in_threadpool(lambda: memberlog.file_request(reg, h, req, actor=who.actor)), 201)

    @app.get("/v1/households/{h}/consents", openapi_extra=_doc(resp="Consent"))
    def get_consents(h: str, who: Annotated[Principal, Depends(scoped("consents.read"))]) -> Response:
        return _json(reg.consent(h, reader=who))

    @app.put("/v1/households/{h}/consents", openapi_extra=_doc("ConsentUpdate", "Consent"))
    async def put_consents(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("consents.change"))]
    ) -> Response:
        c = decode_json(await read_body(request, 4096), p.ConsentUpdate)
        return _json(
            await run_in_threadpool(
                lambda: reg.set_consent(h, marketing=c.marketing, marketing_ban=c.marketing_ban, actor=who.actor)
            )
        )

    @app.get("/v1/households/{h}/hubs")
    def list_hubs(h: str, who: Annotated[Principal, Depends(scoped("hubs.read"))]) -> Response:
        operator_read(who, "hubs.read", h)
        return _json(reg.hubs(h))

    @app.get("/v1/households/{h}/devices")
    def list_devices(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        return _json(ingest.devices(reg, h, who))

    def _query(kind: str) -> Callable[..., Response]:
        def handler(
            h: str,
            who: Annotated[Principal, Depends(scoped("data.read"))],
            device_id: Annotated[str | None, Query(max_length=128)] = None,
            since: float | None = None,
            until: float | None = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        ) -> Response:
            return _json(ingest.query(reg, kind, h, who, device_id=device_id, since=since, until=until, limit=limit))

        return handler

    app.get("/v1/households/{h}/readings")(_query("readings"))
    app.get("/v1/households/{h}/events")(_query("events"))

    @app.get("/v1/households/{h}/commands")
    def list_commands(
        h: str,
        request: Request,
        who: Annotated[Principal, Depends(scoped("commands.read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> Response:
        operator_read(who, "commands.read", h)
        page = reg.commands(h, limit=limit + 1, after=after)
        resp = _json(page[:limit])
        if len(page) > limit:
            # RFC 8288: the next page starts after the last command of this one.
            nxt = request.url.include_query_params(limit=limit, after=page[limit - 1]["id"])
            resp.headers["Link"] = f'<{nxt}>; rel="next"'
        return resp

    @app.post("/v1/households/{h}/commands", status_code=201, openapi_extra=_doc("CommandRequest"))
    async def post_command(
        h: str, request: Request, who: Annotated[Principal, Depends(scoped("commands.change"))]
    ) -> Response:
        c = decode_json(await read_body(request, 64 * 1024), p.CommandRequest)
        if c.kind not in API_COMMAND_KINDS:
            # Member keys decide who can decrypt clips: only the register itself pushes them, from the member list,
            # so no operator can make hubs encrypt to a key of its choosing.
            raise Forbidden(f"only {', '.join(API_COMMAND_KINDS)} can be queued here", code="command_not_allowed")
        ids = await run_in_threadpool(lambda: reg.queue_command(h, c.kind, c.args, hub_id=c.hub_id, actor=who.actor))
        notifier.notify()
        return _json({"ids": ids}, 201)

    @app.get("/v1/households/{h}/clips")
    def list_clips(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        operator_read(who, "clips.list", h)
        return _json(clips.list_clips(reg, h))

    @app.get("/v1/households/{h}/clips/{clip_id}")
    def get_clip(h: str, clip_id: str, who: Annotated[Principal, Depends(scoped("clips.read"))]) -> Response:
        chunks = clips.open_ciphertext(reg, h, _clip_id(clip_id), who)
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=p.CLIP_CONTENT_TYPE)

    @app.get("/v1/households/{h}/audit")
    def get_audit(
        h: str,
        who: Annotated[Principal, Depends(scoped("audit.read"))],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Response:
        operator_read(who, "audit.read", h)
        return _json(reg.audit_entries(h, limit=limit))

    @app.get("/v1/households/{h}/export")
    async def export_data(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        records = await run_in_threadpool(lambda: export.export_household(reg, h, actor=who.actor))
        return StreamingResponse(iterate_in_threadpool(export.ndjson(records)), media_type="application/x-ndjson")

    @app.post("/v1/households/{h}/erase")
    async def erase(h: str, who: Annotated[Principal, Depends(scoped("erase"))], close: bool = False) -> Response:
        summary = await run_in_threadpool(lambda: retention.erase_household(reg, h, actor=who.actor, close=close))
        notifier.notify()
        return _json(summary)

    app.include_router(notify_routes.make_router(reg, scoped, read_body))
    app.include_router(hub_exports_router(reg, hub=hub, read_body=read_body, scoped=scoped))
    app.include_router(webapp.router(WebContext.create(reg, settings)))
    app.mount(webapp.STATIC_PATH, webapp.static_files())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, _SCHEMA_TYPES, hub=hub, bearer=principal)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
