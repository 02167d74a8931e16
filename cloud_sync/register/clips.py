"""Resumable clip uploads: create (idempotent), append at an offset, verify size and SHA-256 at the end.

The register stores age ciphertext only and checks its digest, which the hub computed over the same ciphertext;
it never has, and never asks for, anything that decrypts a clip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, select, update

from cloud_sync.protocol import ClipAbandoned, ClipRecord, ClipUploadStatus
from cloud_sync.register import db
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.blobstore import OffsetMismatch
from cloud_sync.register.errors import Conflict, Invalid, NotFound, RegisterError
from cloud_sync.register.registry import Registry, write_audit

_LOCKS = tuple(threading.Lock() for _ in range(64))


def _lock(household_id: str, clip_id: str) -> threading.Lock:
    # One appender per clip at a time within this process (striped: a fixed set, so no per-clip state to leak);
    # across processes the blob store's offset check under its own write decides.
    return _LOCKS[hash((household_id, clip_id)) % len(_LOCKS)]


class OffsetConflict(Conflict):
    """409 with the offset the hub should resume from."""

    code = "offset_mismatch"

    def __init__(self, current: int, sent: int) -> None:
        super().__init__(f"offset {sent} does not match the current offset {current}")
        self.offset = current


def _row(registry: Registry, household_id: str, clip_id: str) -> dict[str, Any]:
    with registry.engine.connect() as conn:
        row = (
            conn.execute(select(db.clips).where(db.clips.c.household_id == household_id, db.clips.c.clip_id == clip_id))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no upload for clip {clip_id!r}; PUT /v1/clips/{clip_id} first", code="no_clip")
    return dict(row)


def create(registry: Registry, hub: HubIdentity, clip_id: str, rec: ClipRecord) -> ClipUploadStatus:
    """Create the upload (idempotent). An empty clip has nothing to send, so it is verified and completed here."""
    if rec.clip_id != clip_id:
        raise Invalid(f"body clip_id {rec.clip_id!r} does not match the URL {clip_id!r}")
    values = {
        "household_id": hub.household_id,
        "clip_id": clip_id,
        "hub_id": hub.hub_id,
        "device_id": rec.device_id,
        "started": rec.started,
        "duration_s": rec.duration_s,
        "size": rec.size,
        "sha256": rec.sha256,
        "reason": rec.reason,
        "complete": False,
        "created_at": time.time(),
    }
    with registry.engine.begin() as conn:
        conn.execute(db.insert_ignore(registry.engine, db.clips), [values])
        row = (
            conn.execute(
                select(db.clips).where(db.clips.c.household_id == hub.household_id, db.clips.c.clip_id == clip_id)
            )
            .mappings()
            .one()
        )
    if row["hub_id"] != hub.hub_id or row["size"] != rec.size or row["sha256"] != rec.sha256:
        raise Conflict(f"clip {clip_id!r} already exists with a different record", code="clip_conflict")
    if row["complete"]:
        return _complete(row)
    held = registry.blobs.size(hub.household_id, clip_id)
    if held == rec.size:
        # Every byte arrived but the completion never ran (killed after the last chunk's fsync): verify and
        # complete now, so a retried upload never waits for a chunk that will not come. Also an empty clip.
        return append(registry, hub, clip_id, held, b"")
    return ClipUploadStatus(offset=held)


def _complete(row: Any) -> ClipUploadStatus:
    return ClipUploadStatus(offset=row["size"], complete=True, sha256=row["sha256"])


def append_at(registry: Registry, household_id: str, key: str, offset: int, data: bytes) -> int:
    """Appends a resumable upload's chunk at ``offset`` of blob ``key``; returns the blob's new size. A resend (its
    reply was lost) may overlap what is held if the overlapping bytes are the same: only the part beyond is
    appended. Anything else is a real mismatch (409 with the size held). Call it under the upload's lock."""
    current = registry.blobs.size(household_id, key)
    if offset > current:
        raise OffsetConflict(current, offset)
    if offset < current:
        overlap = min(current - offset, len(data))
        if registry.blobs.read_range(household_id, key, offset, overlap) != data[:overlap]:
            raise OffsetConflict(current, offset)
        data, offset = data[overlap:], current
    try:
        return registry.blobs.append(household_id, key, offset, data)
    except OffsetMismatch as exc:
        raise OffsetConflict(exc.current, offset) from exc


def append(registry: Registry, hub: HubIdentity, clip_id: str, offset: int, data: bytes) -> ClipUploadStatus:
    row = _row(registry, hub.household_id, clip_id)
    if row["hub_id"] != hub.hub_id:
        raise NotFound(f"no upload for clip {clip_id!r} from this hub", code="no_clip")
    size = row["size"]
    if offset + len(data) > size:
        raise Invalid(
            f"chunk ends at {offset + len(data)}, beyond the clip size {size}", status=400, code="beyond_size"
        )
    if row["complete"]:
        # A resend after the reply that said "complete" was lost.
        return _complete(row)
    with _lock(hub.household_id, clip_id):
        # Also with no data: that creates the blob of an empty clip, so it can be verified and served.
        new = append_at(registry, hub.household_id, clip_id, offset, data)
        if new < size:
            return ClipUploadStatus(offset=new)
        digest = registry.blobs.sha256(hub.household_id, clip_id)
        if digest != row["sha256"]:
            # Start over: a corrupt upload must not be kept or served.
            registry.blobs.delete(hub.household_id, clip_id)
            raise RegisterError(
                f"uploaded bytes have sha256 {digest}, expected {row['sha256']}; upload discarded, start again at 0",
                status=400,
                code="digest_mismatch",
            )
        with registry.engine.begin() as conn:
            conn.execute(
                update(db.clips)
                .where(db.clips.c.household_id == hub.household_id, db.clips.c.clip_id == clip_id)
                .values(complete=True, completed_at=time.time())
            )
            write_audit(conn, hub.actor, "clip.upload", hub.household_id, clip_id, size=size)
        return ClipUploadStatus(offset=new, complete=True, sha256=digest)


def status(registry: Registry, hub: HubIdentity, clip_id: str) -> ClipUploadStatus:
    row = _row(registry, hub.household_id, clip_id)
    if row["complete"]:
        return _complete(row)
    return ClipUploadStatus(offset=registry.blobs.size(hub.household_id, clip_id))


def abandon(registry: Registry, hub: HubIdentity, clip_id: str) -> ClipAbandoned:
    """The hub lost the clip mid-upload (erased or expired on the hub): forget the partial upload. Idempotent; a
    complete clip is the household's copy and is left alone (erasure reaches it through the household)."""
    with _lock(hub.household_id, clip_id):
        with registry.engine.begin() as conn:
            gone = conn.execute(
                delete(db.clips).where(
                    db.clips.c.household_id == hub.household_id,
                    db.clips.c.clip_id == clip_id,
                    db.clips.c.hub_id == hub.hub_id,
                    db.clips.c.complete.is_(False),
                )
            ).rowcount
            if gone:
                write_audit(conn, hub.actor, "clip.abandon", hub.household_id, clip_id)
        if gone:
            registry.blobs.delete(hub.household_id, clip_id)
    return ClipAbandoned(abandoned=bool(gone))


def list_clips(registry: Registry, household_id: str) -> list[dict[str, Any]]:
    with registry.engine.connect() as conn:
        rows = conn.execute(
            select(db.clips).where(db.clips.c.household_id == household_id).order_by(db.clips.c.started)
        ).mappings()
        return [dict(r) for r in rows]


def open_ciphertext(registry: Registry, household_id: str, clip_id: str, reader: Principal) -> Iterator[bytes]:
    row = _row(registry, household_id, clip_id)
    if not row["complete"]:
        raise Conflict(f"clip {clip_id!r} is not completely uploaded yet", code="incomplete")
    registry.audit(reader.actor, "clip.read", household_id, clip_id)
    return registry.blobs.read(household_id, clip_id)
