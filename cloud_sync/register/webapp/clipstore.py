"""The household's clips as the app reads them: the list, and each clip's age ciphertext exactly as stored.

Scoped to the session's household by the query itself (a clip id of another household is "no such clip"), and
each ciphertext read audited as ``clip.read`` by the member. The register holds no key: what it serves can be
opened only by a member's identity in their own browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import and_, select

from cloud_sync.register import db
from cloud_sync.register.errors import NotFound
from cloud_sync.register.registry import Registry


@dataclass(frozen=True)
class ClipRow:
    clip_id: str
    device: str
    started: float
    duration_s: float
    size: int


def list_complete(reg: Registry, household_id: str, *, limit: int = 200) -> list[ClipRow]:
    """The household's completely uploaded clips, newest first, with the camera's name where it has one."""
    device = and_(db.devices.c.household_id == db.clips.c.household_id, db.devices.c.device_id == db.clips.c.device_id)
    q = (
        select(db.clips, db.devices.c.name.label("device_name"))
        .select_from(db.clips.outerjoin(db.devices, device))
        .where(db.clips.c.household_id == household_id, db.clips.c.complete.is_(True))
        .order_by(db.clips.c.started.desc())
        .limit(limit)
    )
    with reg.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [
        ClipRow(r["clip_id"], r["device_name"] or r["device_id"], r["started"], r["duration_s"], r["size"])
        for r in rows
    ]


def open_clip(reg: Registry, household_id: str, clip_id: str, *, actor: str) -> tuple[int, Iterator[bytes]]:
    """The size and the bytes of a complete clip of this household; 404 ``no_clip`` for anything else."""
    with reg.engine.connect() as conn:
        row = conn.execute(
            select(db.clips.c.size).where(
                db.clips.c.household_id == household_id,
                db.clips.c.clip_id == clip_id,
                db.clips.c.complete.is_(True),
            )
        ).first()
    if row is None:
        raise NotFound("no such clip in this household", code="no_clip")
    reg.audit(actor, "clip.read", household_id, clip_id)
    return row.size, reg.blobs.read(household_id, clip_id)
