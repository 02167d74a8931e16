"""What every router of the register shares: who is calling (hub certificate, bearer token, scoped permission),
bounded body reading and decoding, JSON replies and the OpenAPI fragments of msgspec-typed bodies.

Bodies are decoded with msgspec from a size-bounded read, so every error names the offending field and no request
can make the register buffer more than its limit.
"""

import contextlib
import hashlib
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine

from cloud_sync.register import jsonshape
from cloud_sync.register.auth import HubIdentity, Principal, require
from cloud_sync.register.budget import Lease, MemoryBudget
from cloud_sync.register.errors import Forbidden, Invalid, TooLarge, Unauthenticated
from cloud_sync.register.openapi import CLIP_ID_PATTERN
from cloud_sync.register.ratelimit import Limiter, Rate
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.wakeups import Wakeups

T = TypeVar("T")
JSON = "application/json"
_CLIP_ID = re.compile(CLIP_ID_PATTERN)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(content=msgspec.json.encode(obj), status_code=status, media_type=JSON)


def error_response(status: int, code: str, detail: str, **extra: Any) -> Response:
    body: dict[str, Any] = {"error": code, "detail": detail, **extra}
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=JSON)


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


def lease(request: Request) -> Lease:
    held = request.scope.get("kotihub.lease")
    if held is None:  # an app served without the middleware (never in production): an unlimited private budget
        held = MemoryBudget(2**62).lease()
        request.scope["kotihub.lease"] = held
    return held


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
    held = lease(request)
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
        held.take(len(chunk))
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


def clip_id(value: str) -> str:
    if not _CLIP_ID.fullmatch(value):
        raise Invalid(
            "clip_id must be 1-128 characters of A-Z a-z 0-9 _ . -, at least one a letter or digit", status=400
        )
    return value


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def doc(
    body: str | None = None,
    resp: str | None = None,
    *,
    media: str = JSON,
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
        responses[str(status)] = {"description": "OK", "content": {JSON: {"schema": schema}}}
    for code, text in (errors or {}).items():
        responses[str(code)] = {"description": text, "content": {JSON: {"schema": _ref("ErrorBody")}}}
    if responses:
        extra["responses"] = responses
    return extra


Notifier = Wakeups
"""Wakes long-polls when a command is queued (:mod:`cloud_sync.register.wakeups`)."""


class Callers:
    """Who is calling, as FastAPI dependencies: :attr:`hub` (the verified client certificate of an enrolled,
    unrevoked hub), :attr:`principal` (a bearer token) and :meth:`scoped` (a permission on the household in the
    path). Failed authentications are rate limited per source address and per household. The dependencies are
    attributes made once, so the OpenAPI document recognises them by identity."""

    def __init__(self, settings: Settings, reg: Registry) -> None:
        self.reg = reg
        self.settings = settings
        self.limiter = Limiter()
        # Refilled over ten minutes; a household (reached from many addresses) gets five sources' worth.
        self.auth_rate = Rate(settings.auth_failure_burst, settings.auth_failure_burst / 600)
        self.auth_rate_hh = Rate(5 * settings.auth_failure_burst, 5 * settings.auth_failure_burst / 600)
        self.hub: Callable[[Request], HubIdentity] = self._hub
        # For a route that checks the hub in the database itself, in its own worker (:meth:`check_hub`): the hub's
        # ingest, so that a smoke alarm's check never waits for a thread or a connection bulk requests hold.
        self.hub_certificate: Callable[[Request], Awaitable[HubIdentity]] = self._hub_certificate
        self.principal: Callable[[Request], Principal] = self._principal

    @staticmethod
    def source(request: Request) -> str:
        return request.client.host if request.client else ""

    def _hub(self, request: Request) -> HubIdentity:
        identity = self._certified(request)
        self.check_hub(self.source(request), identity)
        return identity

    async def _hub_certificate(self, request: Request) -> HubIdentity:
        return self._certified(request)

    def _certified(self, request: Request) -> HubIdentity:
        """The hub its client certificate names (verified; cached by certificate), not yet checked in the database."""
        src = ("src", self.source(request))
        self.limiter.check(src, self.auth_rate, "failed authentications from this address")
        tls = request.scope.get("extensions", {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or []
        try:
            if not chain:
                raise Unauthenticated("a client certificate issued at enrollment is required", code="no_client_cert")
            household_id, hub_id = self.reg.ca.hub_identity(chain[0].encode())
        except (Unauthenticated, Forbidden):
            self.limiter.spend(src, self.auth_rate)
            raise
        der = ssl.PEM_cert_to_DER_cert(chain[0])
        return HubIdentity(hub_id=hub_id, household_id=household_id, cert_sha256=hashlib.sha256(der).hexdigest())

    def check_hub(
        self, source: str, identity: HubIdentity, engine: Engine | None = None, conn: Connection | None = None
    ) -> None:
        """The database half of :attr:`hub` (enrolled, not revoked, its current certificate), on ``engine``'s pool
        or in ``conn``'s transaction (see :meth:`Registry.check_hub`). Blocking: for a thread."""
        with self.refusals_counted(source):
            self.reg.check_hub(identity, engine=engine, conn=conn)

    @contextlib.contextmanager
    def refusals_counted(self, source: str) -> Iterator[None]:
        """A hub refused inside (unknown, revoked, a retired certificate) counts as a failed authentication from
        ``source``, as :attr:`hub` counts it; for a route that checks the hub with its own read."""
        try:
            yield
        except (Unauthenticated, Forbidden):
            self.limiter.spend(("src", source), self.auth_rate)
            raise

    def _principal(self, request: Request) -> Principal:
        src = ("src", self.source(request))
        target = request.path_params.get("h")
        hh = ("hh", str(target)) if target else None
        self.limiter.check(src, self.auth_rate, "failed authentications from this address")
        if hh is not None:
            self.limiter.check(hh, self.auth_rate_hh, "failed authentications for this household")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("an 'Authorization: Bearer <token>' header is required", code="no_token")
            if len(token) > 256:
                raise Unauthenticated("unknown or revoked API token", code="bad_token")
            return self.reg.principal(token.strip())
        except Unauthenticated:
            self.limiter.spend(src, self.auth_rate)
            if hh is not None:
                self.limiter.spend(hh, self.auth_rate_hh)
            raise

    def scoped(self, permission: str) -> Callable[..., Principal]:
        """A dependency: the bearer token's principal, holding ``permission`` on the household ``h`` of the path."""
        reg = self.reg
        who_type = Annotated[Principal, Depends(self.principal)]

        def dep(h: str, who: who_type) -> Principal:
            require(who, permission, h)
            # Every household route answers 404 for a household that does not exist, before anything is read or
            # audited (an operator's "read" of nothing is no read).
            with reg.engine.connect() as conn:
                reg.require_household(conn, h)
            return who

        return dep

    def operator_read(self, who: Principal, action: str, h: str) -> None:
        """Audit an operator's read before the data is read (a read that fails after it is still on record). Reads
        whose registry function audits in its own transaction (members, consents, devices, readings, events,
        export) do not call this."""
        if who.is_operator:
            self.reg.audit(who.actor, action, h)
