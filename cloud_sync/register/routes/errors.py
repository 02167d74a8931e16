"""The register's error replies: every failure is ``{"error": code, "detail": text}`` with a precise status."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match

from cloud_sync import protocol as p
from cloud_sync.register import clips
from cloud_sync.register.errors import Busy, RegisterError
from cloud_sync.register.routes.common import error_response

log = logging.getLogger(__name__)


def _api_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """Every API route, those of included routers too (newer FastAPI keeps an included router as one entry)."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif (inner := getattr(route, "original_router", None)) is not None:
            out += _api_routes(inner.routes)
    return out


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(RegisterError)
    async def _register_error(_: Request, exc: RegisterError) -> Response:
        extra = {"offset": exc.offset} if isinstance(exc, clips.OffsetConflict) else {}
        resp = error_response(exc.status, exc.code, str(exc), **extra)
        if isinstance(exc, Busy):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    @app.exception_handler(p.ProtocolError)
    async def _protocol_error(_: Request, exc: p.ProtocolError) -> Response:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> Response:
        # A value msgspec let through but the database refuses; the value itself is not echoed (personal data).
        log.warning("database rejected a value: %s", type(exc.orig).__name__)
        return error_response(422, "invalid", f"a value was rejected by the database ({type(exc.orig).__name__})")

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        # A hub's connection cut mid-body (a flaky uplink, the hub restarting): nothing was stored, the hub resumes
        # from the offset it asks for. Routine, so no traceback; there is nobody left to answer.
        log.info("a client disconnected before sending its whole request (%s)", request.url.path.split("/")[2])
        return error_response(400, "client_disconnected", "the request body was cut off")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return error_response(422, "invalid", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        resp = error_response(exc.status_code, "http_error", str(exc.detail))
        if exc.headers:
            resp.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only, not of all of them.
            scope = {**request.scope, "method": ""}
            matching = [r for r in _api_routes(app.routes) if r.matches(scope)[0] != Match.NONE]
            allowed = {m for r in matching for m in r.methods or ()}
            resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp
