"""Clips: a hub uploads ciphertext in resumable chunks (mTLS); a household lists and downloads it (bearer)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import clips
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, decode_json, doc, json_response, read_body
from cloud_sync.register.routes.common import clip_id as _checked  # the path parameter has its name


def router(reg: Registry, callers: Callers) -> APIRouter:
    r = APIRouter()
    Hub = Annotated[HubIdentity, Depends(callers.hub)]

    @r.put("/v1/clips/{clip_id}", openapi_extra=doc("ClipRecord", "ClipUploadStatus"))
    async def clip_create(clip_id: str, request: Request, who: Hub) -> Response:
        clip_id = _checked(clip_id)
        rec = decode_json(await read_body(request, 16 * 1024), p.ClipRecord)
        return json_response(await run_in_threadpool(clips.create, reg, who, clip_id, rec))

    @r.patch("/v1/clips/{clip_id}", openapi_extra=doc(resp="ClipUploadStatus"))
    async def clip_append(
        clip_id: str, request: Request, who: Hub, offset: Annotated[int, Query(ge=0, le=p.MAX_CLIP_SIZE_BYTES)]
    ) -> Response:
        clip_id = _checked(clip_id)
        data = await read_body(request, p.MAX_CLIP_CHUNK_BYTES)
        return json_response(await run_in_threadpool(clips.append, reg, who, clip_id, offset, data))

    @r.delete("/v1/clips/{clip_id}", openapi_extra=doc(resp="ClipAbandoned"))
    async def clip_abandon(clip_id: str, who: Hub) -> Response:
        return json_response(await run_in_threadpool(clips.abandon, reg, who, _checked(clip_id)))

    @r.get("/v1/clips/{clip_id}/status", openapi_extra=doc(resp="ClipUploadStatus"))
    def clip_status(clip_id: str, who: Hub) -> Response:
        return json_response(clips.status(reg, who, _checked(clip_id)))

    @r.get("/v1/households/{h}/clips")
    def list_clips(h: str, who: Annotated[Principal, Depends(callers.scoped("data.read"))]) -> Response:
        callers.operator_read(who, "clips.list", h)
        return json_response(clips.list_clips(reg, h))

    @r.get("/v1/households/{h}/clips/{clip_id}")
    def get_clip(h: str, clip_id: str, who: Annotated[Principal, Depends(callers.scoped("clips.read"))]) -> Response:
        chunks = clips.open_ciphertext(reg, h, _checked(clip_id), who)
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=p.CLIP_CONTENT_TYPE)

    return r
