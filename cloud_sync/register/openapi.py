"""The register's OpenAPI document, true to what the service does.

FastAPI sees neither the bodies we decode by hand (msgspec) nor the errors our handlers turn into
``{"error", "detail"}``, so its document is completed here from the routes themselves: which ones authenticate
a hub (mTLS) or a bearer token, read a body or take path parameters decides the error statuses each can answer,
every error is documented with the one error body the register sends, and non-JSON replies with their content type.
New routes get the same treatment without doing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from cloud_sync import protocol as p

_REASONS = {
    400: "Malformed request: not JSON/msgpack/zstd, a bad Content-Length, or a malformed identifier",
    401: "No or unknown credentials (client certificate or bearer token), or a retired certificate",
    403: "Authenticated, but not allowed: another household, a role without the permission, a revoked hub",
    404: "No such household, hub, member, clip, command or lane",
    409: "Conflicts with what the register holds (clip bytes, a command's result)",
    413: "Body (or inflated body) larger than the limit",
    415: "Wrong Content-Type or Content-Encoding",
    422: "A field is invalid: the detail names it",
    429: "Too many failed authentications or enrollment attempts from this address or for this household",
    503: "The register's budget for request bodies is spent; retry after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}
}
_STREAMS = {"export_data": "application/x-ndjson", "get_clip": p.CLIP_CONTENT_TYPE}
"""Routes whose reply is not JSON, by route name."""
_EXTRA: dict[str, tuple[int, ...]] = {
    "ingest_lane": (404, 409, 415),
    "clip_create": (409,),
    "clip_append": (409,),
    "command_result": (404, 409),
    "enroll": (401, 403, 429),
    "post_command": (404,),
    "erase": (404,),
    "get_clip": (409,),
}
"""Statuses a route answers beyond those its shape implies."""


CLIP_ID_PATTERN = "^(?=.*[A-Za-z0-9])[A-Za-z0-9_.-]{1,128}$"
"""A clip id: 1-128 of ``A-Z a-z 0-9 _ . -``, at least one a letter or digit."""


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def document(
    app: FastAPI, types: tuple[Any, ...], *, hub: tuple[Callable[..., Any], ...], bearer: Callable[..., Any]
) -> dict[str, Any]:
    """``hub``: the dependencies that authenticate a hub (its certificate, checked in the database or not yet)."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    comps = schema.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    schemas.update(components)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    comps["securitySchemes"] = {
        "hubCertificate": {"type": "mutualTLS", "description": "The client certificate issued at enrollment"},
        "bearerToken": {"type": "http", "scheme": "bearer", "description": "An API token (household or operator)"},
    }
    for route in _api_routes(app.routes):
        calls = {d.call for d in _all(route.dependant)}
        for method in (route.methods or set()) - {"HEAD"}:
            op = schema["paths"][route.path_format][method.lower()]
            _complete(op, route, method, bool(calls.intersection(hub)), bearer in calls)
    return schema


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, those of included routers too: newer FastAPI keeps an included router as one entry
    (holding ``original_router``) instead of copying its routes. Our routers are included without a prefix."""
    for route in routes:
        if isinstance(route, APIRoute):
            if route.include_in_schema:
                yield route
        elif (inner := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(inner.routes)


def _all(dependant: Dependant) -> list[Dependant]:
    """``dependant`` and every dependency under it."""
    out, stack = [], [dependant]
    while stack:
        d = stack.pop()
        out.append(d)
        stack.extend(d.dependencies)
    return out


def _complete(op: dict[str, Any], route: APIRoute, method: str, is_hub: bool, is_bearer: bool) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    codes: set[int] = set(_EXTRA.get(route.name, ()))
    path_params = {param.name for d in _all(route.dependant) for param in d.path_params}
    has_params = bool(path_params or any(d.query_params for d in _all(route.dependant)))
    if has_params:
        codes |= {400, 422}
    if method in ("POST", "PUT", "PATCH"):
        codes |= {400, 413, 422, 503}
    if is_hub:
        codes |= {401, 403, 429}
        op["security"] = [{"hubCertificate": []}]
    if is_bearer:
        codes |= {401, 403, 404, 429}
        op["security"] = [{"bearerToken": []}]
    if path_params - {"h"}:
        codes.add(404)
    for code in sorted(codes):
        reply: dict[str, Any] = {
            "description": _REASONS[code],
            "content": {"application/json": {"schema": _ref("ErrorBody")}},
        }
        if code in (429, 503):
            reply["headers"] = _RETRY_AFTER
        responses[str(code)] = reply
    success = str(route.status_code or 200)
    if route.name in _STREAMS:
        responses[success] = {
            "description": "OK",
            "content": {_STREAMS[route.name]: {"schema": {"type": "string", "format": "binary"}}},
        }
    if route.status_code == 204:
        responses["204"] = {"description": "Done; no content"}
    for param in op.get("parameters", []):
        if param.get("name") == "clip_id":  # checked by hand (400 otherwise), so FastAPI cannot see the pattern
            param["schema"] = {"type": "string", "pattern": CLIP_ID_PATTERN, "minLength": 1, "maxLength": 128}
    if route.name == "ingest_lane":
        encoding = {"type": "string", "enum": [p.ZSTD_ENCODING]}
        op.setdefault("parameters", []).append(
            {"name": "Content-Encoding", "in": "header", "required": True, "schema": encoding}
        )
    if route.name == "clip_append":
        binary = {"type": "string", "format": "binary"}
        op["requestBody"] = {"required": True, "content": {"application/octet-stream": {"schema": binary}}}
    if route.name == "list_commands":
        responses[success].setdefault("headers", {})["Link"] = {
            "description": 'The next page, as <URL>; rel="next", when there is one',
            "schema": {"type": "string"},
        }
