"""The hub's copy of the household's data, as the register keeps it: age ciphertext only, for :data:`KEEP_S`.

A household member asks for it in the app (an ``export`` command, :func:`cloud_sync.register.mydata.ask_hub_export`);
the hub seals its archive to the household's members and uploads it here under the command's id, resumably like a
clip (``PUT``/``PATCH /v1/exports/{command_id}``, offset and SHA-256 checked, :mod:`.clips`' rules). Only a hub the
command was issued to may upload, once. The register never holds anything that decrypts it: the member's browser
does. It is deleted :data:`KEEP_S` after it arrived (:func:`purge_expired`, run with retention), and with the
household's erasure (its rows are in ``HOUSEHOLD_TABLES``, its blobs in the household's blob directory). Each read
of the ciphertext is audited as ``hub_export.read``.

Register table (for the integrator's migration): ``hub_exports``.
"""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import BigInteger, Boolean, Column, Double, String, Table, and_, delete, select, update
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import db
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.clips import append_at
from cloud_sync.register.errors import Invalid, NotFound, RegisterError
from cloud_sync.register.registry import Registry, write_audit

KEEP_S: Final = 7 * 86_400.0
"""How long the register keeps a hub's sealed copy after it arrived."""
BLOB_PREFIX: Final = "hubexport-"
"""Blob keys: ``<household>/hubexport-<command id>``, beside the household's clips, so erasing the household's blobs
removes these too."""

hub_exports = Table(
    "hub_exports",
    db.metadata,
    Column("household_id", String(64), nullable=False, primary_key=True),
    Column("export_id", String(64), nullable=False, primary_key=True),
    Column("hub_id", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("complete", Boolean, nullable=False, default=False),
    Column("created_at", Double, nullable=False),
    Column("completed_at", Double, nullable=True),
)
# Erasure deletes its rows; its 7-day life is purge_expired's (blobs first), not the household's retention period.
db.join_household_tables({hub_exports: ()})

_LOCK = threading.Lock()


def _key(export_id: str) -> str:
    return BLOB_PREFIX + export_id


def _command(registry: Registry, hub: HubIdentity, export_id: str) -> None:
    c = db.commands.c
    with registry.engine.connect() as conn:
        row = conn.execute(
            select(c.status).where(
                c.id == export_id, c.household_id == hub.household_id, c.hub_id == hub.hub_id, c.kind == "export"
            )
        ).first()
    if row is None:
        raise NotFound("no export command of this hub with that id", code="no_export")


def _row(registry: Registry, household_id: str, export_id: str) -> dict[str, Any] | None:
    t = hub_exports.c
    with registry.engine.connect() as conn:
        row = (
            conn.execute(select(hub_exports).where(t.household_id == household_id, t.export_id == export_id))
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def _status(row: dict[str, Any], held: int) -> p.ClipUploadStatus:
    if row["complete"]:
        return p.ClipUploadStatus(offset=row["size"], complete=True, sha256=row["sha256"])
    return p.ClipUploadStatus(offset=held)


def create(registry: Registry, hub: HubIdentity, export_id: str, rec: p.ExportRecord) -> p.ClipUploadStatus:
    """Start (or resume) the upload. A different record for an incomplete upload starts it over (the hub sealed
    its copy again after losing the first); a complete one is never replaced."""
    _command(registry, hub, export_id)
    t = hub_exports.c
    with _LOCK:
        row = _row(registry, hub.household_id, export_id)
        if row is not None and row["complete"]:
            return _status(row, row["size"])
        if row is not None and (row["size"], row["sha256"]) != (rec.size, rec.sha256):
            registry.blobs.delete(hub.household_id, _key(export_id))
            with registry.engine.begin() as conn:
                conn.execute(delete(hub_exports).where(t.household_id == hub.household_id, t.export_id == export_id))
            row = None
        if row is None:
            values = {
                "household_id": hub.household_id,
                "export_id": export_id,
                "hub_id": hub.hub_id,
                "size": rec.size,
                "sha256": rec.sha256,
                "complete": False,
                "created_at": time.time(),
            }
            with registry.engine.begin() as conn:
                conn.execute(db.insert_ignore(registry.engine, hub_exports), [values])
            row = values
    held = registry.blobs.size(hub.household_id, _key(export_id))
    if held == rec.size:
        return append(registry, hub, export_id, held, b"")
    return _status(row, held)


def append(registry: Registry, hub: HubIdentity, export_id: str, offset: int, data: bytes) -> p.ClipUploadStatus:
    row = _row(registry, hub.household_id, export_id)
    if row is None or row["hub_id"] != hub.hub_id:
        raise NotFound(f"no upload for export {export_id!r}; PUT /v1/exports/{export_id} first", code="no_export")
    size = row["size"]
    if offset + len(data) > size:
        raise Invalid(f"chunk ends at {offset + len(data)}, beyond the size {size}", status=400, code="beyond_size")
    if row["complete"]:
        return _status(row, size)
    key = _key(export_id)
    with _LOCK:
        new = append_at(registry, hub.household_id, key, offset, data)
        if new < size:
            return p.ClipUploadStatus(offset=new)
        digest = registry.blobs.sha256(hub.household_id, key)
        if digest != row["sha256"]:
            registry.blobs.delete(hub.household_id, key)
            raise RegisterError(
                f"uploaded bytes have sha256 {digest}, expected {row['sha256']}; upload discarded, start again at 0",
                status=400,
                code="digest_mismatch",
            )
        t = hub_exports.c
        with registry.engine.begin() as conn:
            conn.execute(
                update(hub_exports)
                .where(t.household_id == hub.household_id, t.export_id == export_id)
                .values(complete=True, completed_at=time.time())
            )
            write_audit(conn, hub.actor, "hub_export.upload", hub.household_id, export_id, size=size)
        return p.ClipUploadStatus(offset=new, complete=True, sha256=digest)


def ready(registry: Registry, household_id: str, *, now: float | None = None) -> dict[str, dict[str, Any]]:
    """The household's complete, unexpired copies by export (command) id: size and when it expires."""
    now = time.time() if now is None else now
    t = hub_exports.c
    with registry.engine.connect() as conn:
        rows = conn.execute(
            select(t.export_id, t.size, t.completed_at).where(
                t.household_id == household_id, t.complete.is_(True), t.completed_at > now - KEEP_S
            )
        ).all()
    return {r.export_id: {"size": r.size, "expires_at": r.completed_at + KEEP_S} for r in rows}


def export_state(command: dict[str, Any], ready: dict[str, Any] | None) -> str:
    """``asked`` (the hub has not answered), ``ready`` (its ciphertext is here), ``failed``, or ``expired`` (it
    arrived and was deleted after :data:`KEEP_S`, or erased)."""
    if command["status"] == "failed":
        return "failed"
    if command["status"] != "done":
        return "asked"
    return "ready" if ready is not None else "expired"


def listing(registry: Registry, household_id: str, *, now: float | None = None) -> list[dict[str, Any]]:
    """The latest export requests, newest first, each with its ``state`` and, when ready, ``size`` and
    ``expires_at``."""
    from cloud_sync.register import mydata  # mydata's erasure side imports retention, which imports this module

    have = ready(registry, household_id, now=now)
    return [
        {**e, "state": export_state(e, have.get(e["id"])), **(have.get(e["id"]) or {})}
        for e in mydata.hub_exports(registry, household_id)
    ]


def open_export(
    registry: Registry, household_id: str, export_id: str, *, actor: str, now: float | None = None
) -> tuple[int, Iterator[bytes]]:
    """The ciphertext of one complete, unexpired copy of this household; 404 ``no_export`` for anything else.
    Audited before it is read."""
    found = ready(registry, household_id, now=now).get(export_id)
    if found is None:
        raise NotFound("no such copy of the hub's data (it may have expired)", code="no_export")
    registry.audit(actor, "hub_export.read", household_id, export_id)
    return int(found["size"]), registry.blobs.read(household_id, _key(export_id))


def purge_expired(registry: Registry, *, now: float | None = None) -> int:
    """Delete every copy older than :data:`KEEP_S`, and every upload left unfinished as long: blobs first."""
    cutoff = (time.time() if now is None else now) - KEEP_S
    t = hub_exports.c
    old = and_(t.complete.is_(True), t.completed_at < cutoff) | and_(t.complete.is_(False), t.created_at < cutoff)
    with registry.engine.connect() as conn:
        doomed = conn.execute(select(t.household_id, t.export_id).where(old)).all()
    for household_id, export_id in doomed:
        registry.blobs.delete(household_id, _key(export_id))
        with registry.engine.begin() as conn:
            conn.execute(delete(hub_exports).where(t.household_id == household_id, t.export_id == export_id))
    return len(doomed)


_ExportId = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}\\Z")]


def _export_id(export_id: str) -> str:
    try:
        return msgspec.convert(export_id, _ExportId)
    except msgspec.ValidationError:
        raise Invalid("invalid export id", status=400, code="bad_export_id") from None


def router(
    reg: Registry,
    *,
    hub: Callable[[Request], HubIdentity],
    read_body: Callable[[Request, int], Any],
    scoped: Callable[[str], Callable[..., Principal]],
) -> APIRouter:
    """The hub's upload endpoints (mTLS hub identity) and the household API's list and ciphertext (bearer token,
    as for clips: ``data.read`` to list, ``clips.read`` for the ciphertext, audited ``hub_export.read``)."""
    r = APIRouter()
    Hub = Annotated[HubIdentity, Depends(hub)]

    @r.get("/v1/households/{h}/hub-exports")
    def list_exports(h: str, who: Annotated[Principal, Depends(scoped("data.read"))]) -> Response:
        if who.is_operator:
            reg.audit(who.actor, "hub_export.list", h)
        return Response(msgspec.json.encode(listing(reg, h)), media_type="application/json")

    @r.get("/v1/households/{h}/hub-exports/{export_id}")
    def get_export(
        h: str, export_id: str, who: Annotated[Principal, Depends(scoped("clips.read"))]
    ) -> StreamingResponse:
        size, chunks = open_export(reg, h, _export_id(export_id), actor=who.actor)
        return StreamingResponse(
            iterate_in_threadpool(chunks),
            media_type=p.CLIP_CONTENT_TYPE,
            headers={"Content-Length": str(size), "Cache-Control": "no-store"},
        )

    @r.put("/v1/exports/{export_id}")
    async def put_export(export_id: str, request: Request, who: Hub) -> Any:
        body = await read_body(request, 4096)
        try:
            rec = msgspec.json.decode(body, type=p.ExportRecord)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Invalid(f"invalid export record: {exc}", status=400, code="bad_record") from None
        state = await run_in_threadpool(create, reg, who, _export_id(export_id), rec)
        return Response(msgspec.json.encode(state), media_type="application/json")

    @r.patch("/v1/exports/{export_id}")
    async def patch_export(export_id: str, request: Request, who: Hub, offset: Annotated[int, Query(ge=0)]) -> Any:
        data = await read_body(request, p.MAX_CLIP_CHUNK_BYTES)
        state = await run_in_threadpool(append, reg, who, _export_id(export_id), offset, data)
        return Response(msgspec.json.encode(state), media_type="application/json")

    return r
