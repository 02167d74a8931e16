"""``/v1/releases``: the TUF repository's files for hubs, each hub's assignment, and the outcomes hubs report.

The metadata and bundles are served as files from the repository directory (``<state>/releases``, written by
``kotihub-register release add``); the register adds nothing to them, and a hub trusts them only through TUF, so a
register that served something else would be refused (docs/updates.md). Only enrolled hubs (mTLS) may read them.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from cloud_sync import releases as rel
from cloud_sync.register import config_push, rollout
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.errors import NotFound
from cloud_sync.register.registry import Registry

METADATA_RE: Final = re.compile(r"^([1-9][0-9]{0,9}\.)?(root|targets|snapshot|timestamp)\.json\Z")
TARGET_RE: Final = re.compile(r"^[0-9a-f]{64}\.kotihub-[0-9.]{1,64}-[a-z0-9_]{1,64}\.tar\Z")
MAX_OUTCOME_BYTES: Final = 4096


def repo_dir(registry: Registry) -> Path:
    return registry.settings.state_dir / "releases"


def router(registry: Registry, *, hub: Callable[[Request], HubIdentity]) -> APIRouter:
    from cloud_sync.register.app import decode_json, read_body  # the app's bounded body helpers

    r = APIRouter()
    root = repo_dir(registry)

    def _file(sub: str, name: str, pattern: re.Pattern[str], media: str) -> FileResponse:
        # The name is matched whole against a strict pattern before it touches the filesystem: no traversal.
        path = root / sub / name
        if not pattern.match(name) or not path.is_file():
            raise NotFound(f"no such release file: {name[:100]}", code="no_release_file")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

    @r.get("/v1/releases/tuf/metadata/{name}")
    def metadata(name: str, who: Annotated[HubIdentity, Depends(hub)]) -> FileResponse:
        return _file("metadata", name, METADATA_RE, "application/json")

    @r.get("/v1/releases/tuf/targets/{name}")
    def target(name: str, who: Annotated[HubIdentity, Depends(hub)]) -> FileResponse:
        return _file("targets", name, TARGET_RE, "application/x-tar")

    @r.get("/v1/releases/assignment")
    async def assignment(who: Annotated[HubIdentity, Depends(hub)]) -> Response:
        a = await run_in_threadpool(rollout.assignment, registry, who.hub_id)
        return Response(content=msgspec.json.encode(a), media_type="application/json")

    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Outcome"}}}}

    @r.post("/v1/releases/outcome", status_code=204, openapi_extra={"requestBody": body})
    async def outcome(request: Request, who: Annotated[HubIdentity, Depends(hub)]) -> Response:
        o = decode_json(await read_body(request, MAX_OUTCOME_BYTES), rel.Outcome)
        await run_in_threadpool(rollout.record_outcome, registry, who.hub_id, who.household_id, o)
        return Response(status_code=204)

    return r


def config_router(registry: Registry, *, hub: Callable[[Request], HubIdentity]) -> APIRouter:
    """``GET /v1/config/pending`` and ``POST /v1/config/{push_id}/outcome`` for hubs (remote configuration)."""
    from cloud_sync.register.app import decode_json, read_body

    r = APIRouter()

    @r.get("/v1/config/pending")
    async def pending(who: Annotated[HubIdentity, Depends(hub)]) -> Response:
        got = await run_in_threadpool(config_push.pending, registry, who.hub_id)
        return Response(content=msgspec.json.encode(got), media_type="application/json")

    @r.post("/v1/config/{push_id}/outcome", status_code=204)
    async def outcome(push_id: str, request: Request, who: Annotated[HubIdentity, Depends(hub)]) -> Response:
        o = decode_json(await read_body(request, MAX_OUTCOME_BYTES), config_push.ConfigOutcome)
        await run_in_threadpool(config_push.record_outcome, registry, who.hub_id, who.household_id, push_id, o)
        return Response(status_code=204)

    return r
