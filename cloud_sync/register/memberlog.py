"""The register's copy of each household's signed member list: an append-only, hash-chained log, and its relay.

The register checks each new version as a hub would (signature by a member of the version before, number one
higher, ``prev`` the digest of the version before) only to answer a member precisely; hubs check for themselves
and trust none of this. A stored version is never updated or deleted by the API. Each append queues one
``member_keys`` command per hub carrying only the versions that hub has not reported holding, and supersedes the
hub's older pending ones; a hub far behind is sent the versions it lacks 16 at a time as it reports progress, so
per change the register does a bounded amount of work and stores each version once, in the log.

Operators cannot append (they hold no member's key); they may file a :class:`~cloud_sync.protocol.MemberRequest`
that a member can sign into the list with ``kotihub member add --request``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p
from cloud_sync.register import db
from cloud_sync.register.auth import HubIdentity, new_id
from cloud_sync.register.errors import Conflict, Invalid
from cloud_sync.register.registry import Registry, write_audit

log = logging.getLogger(__name__)

COMMAND_KIND = "member_keys"
MAX_PAGE = 500
MAX_VERSIONS_PER_COMMAND = 16
"""A command stays under about 120 KB even at the member cap; a hub further behind gets the rest in turns."""
MAX_REQUESTS = 64
"""Open requests per household: an operator cannot flood a household's app with proposals."""

_REFUSAL: dict[type[ml.MemberListError], tuple[int, str]] = {
    ml.Malformed: (422, "member_list_malformed"),
    ml.Forged: (422, "member_list_bad_signature"),
    ml.Rollback: (409, "member_list_stale"),
    ml.Gap: (409, "member_list_gap"),
    ml.Fork: (409, "member_list_fork"),
}


def _refuse(exc: ml.MemberListError) -> Invalid | Conflict:
    status, code = _REFUSAL.get(type(exc), (422, "member_list_malformed"))
    return Conflict(str(exc), code=code) if status == 409 else Invalid(str(exc), code=code)


def latest(conn: Connection, household_id: str) -> ml.Verified | None:
    """The household's newest stored version (verified when it was appended), or None before the first."""
    row = conn.execute(
        select(db.member_log.c.signed)
        .where(db.member_log.c.household_id == household_id)
        .order_by(db.member_log.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    signed = ml.decode_signed(row.signed)
    body, data = ml.open_signed(signed)
    return ml.Verified(signed, body, data)


def append(reg: Registry, household_id: str, signed: p.SignedMemberList, *, actor: str) -> p.MemberLogEntry:
    """Stores the next version (201) or refuses it: 422 malformed or badly signed, 409 not the next one."""
    now = time.time()
    with reg.engine.begin() as conn:
        reg.require_household(conn, household_id)
        newest = latest(conn, household_id)
        try:
            verified = ml.verify_genesis(signed) if newest is None else ml.verify_next(newest, signed)
        except ml.MemberListError as exc:
            raise _refuse(exc) from exc
        if verified.body.household != household_id:
            raise Invalid("the list names another household", code="member_list_household")
        entry = p.MemberLogEntry(
            version=verified.version, digest=verified.digest, prev=verified.body.prev, signed=signed, created_at=now
        )
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(db.member_log).values(
                        household_id=household_id,
                        version=entry.version,
                        digest=entry.digest,
                        prev=entry.prev,
                        signed=ml.encode_signed(signed).decode(),
                        created_at=now,
                    )
                )
        except IntegrityError as exc:  # another member's version took this number first
            raise Conflict(f"version {entry.version} already exists", code="member_list_stale") from exc
        write_audit(
            conn, actor, "member_list.append", household_id, str(entry.version), signer=signed.signer,
            members=len(verified.body.members),
        )  # fmt: skip
        _queue_for_hubs(reg, conn, household_id, actor)
    log.info("member list version %d stored for a household", entry.version)
    return entry


def _versions_after(conn: Connection, household_id: str, after: int, limit: int | None = None) -> list[Any]:
    q = (
        select(db.member_log)
        .where(db.member_log.c.household_id == household_id, db.member_log.c.version > after)
        .order_by(db.member_log.c.version)
    )
    if limit is not None:
        q = q.limit(limit)
    return list(conn.execute(q).mappings())


def _queue_for_hubs(reg: Registry, conn: Connection, household_id: str, actor: str) -> None:
    hubs = (
        conn.execute(select(db.hubs.c.id).where(db.hubs.c.household_id == household_id, db.hubs.c.revoked.is_(False)))
        .scalars()
        .all()
    )
    for hub_id in hubs:
        queue_for_hub(reg, conn, household_id, hub_id, actor)


def queue_for_hub(
    reg: Registry, conn: Connection, household_id: str, hub_id: str, actor: str, *, keep: str | None = None
) -> None:
    """One pending ``member_keys`` command for ``hub_id`` with the next versions it has not reported holding (at
    most :data:`MAX_VERSIONS_PER_COMMAND`; the rest follow as the hub reports progress). Supersedes the hub's
    other pending ones (``keep``: the command whose result is being recorded)."""
    held = conn.execute(
        select(db.hub_member_versions.c.version).where(db.hub_member_versions.c.hub_id == hub_id)
    ).scalar()
    rows = _versions_after(conn, household_id, held or 0, MAX_VERSIONS_PER_COMMAND)
    if not rows:
        return
    conn.execute(
        update(db.commands)
        .where(
            and_(
                db.commands.c.hub_id == hub_id,
                db.commands.c.kind == COMMAND_KIND,
                db.commands.c.status == "pending",
                db.commands.c.id != (keep or ""),
            )
        )
        # The versions go with the superseded command: kept, they would add up to the quadratic history again.
        .values(status="superseded", args={}, completed_at=time.time())
    )
    versions = [msgspec.json.decode(r["signed"]) for r in rows]
    reg._queue(conn, household_id, COMMAND_KIND, {"versions": versions}, hub_id, actor)


def on_hub_result(reg: Registry, conn: Connection, hub: HubIdentity, command_id: str, result: p.CommandResult) -> None:
    """Remembers the version a hub reports holding (done or refused); sends the next versions if it is still
    behind, or what it lacks after a gap. A delivered command keeps only the version it brought the hub to: the
    log holds the versions once."""
    version = result.detail.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return
    record_hub_version(reg, conn, hub.hub_id, version)
    if result.status == "done":
        conn.execute(update(db.commands).where(db.commands.c.id == command_id).values(args={"version": version}))
    if result.status == "done" or result.detail.get("reason") == "gap":
        queue_for_hub(reg, conn, hub.household_id, hub.hub_id, f"hub:{hub.hub_id}", keep=command_id)


def record_hub_version(reg: Registry, conn: Connection, hub_id: str, version: int) -> None:
    """The version ``hub_id`` holds: reported in a command's result, or the newest one handed over at enrollment
    (a hub that could not anchor it holds nothing and refuses every list anyway until it is provisioned again)."""
    conn.execute(db.upsert(reg.engine, db.hub_member_versions, ["version"]), [{"hub_id": hub_id, "version": version}])


def entries(reg: Registry, household_id: str, *, after: int = 0, limit: int = 100) -> list[p.MemberLogEntry]:
    with reg.engine.connect() as conn:
        reg.require_household(conn, household_id)
        rows = _versions_after(conn, household_id, after, min(limit, MAX_PAGE))
    return [
        p.MemberLogEntry(
            version=r["version"],
            digest=r["digest"],
            prev=r["prev"],
            signed=ml.decode_signed(r["signed"]),
            created_at=r["created_at"],
        )
        for r in rows
    ]


def chain(conn: Connection, household_id: str) -> list[p.SignedMemberList]:
    """Every version, oldest first: what a newly enrolled hub is handed to anchor in its pairing code."""
    return [ml.decode_signed(r["signed"]) for r in _versions_after(conn, household_id, 0)]


# ------------------------------------------------------------------------------------------------- requests


def file_request(reg: Registry, household_id: str, req: p.MemberRequest, *, actor: str) -> p.MemberRequestRecord:
    """An operator's proposal to add a member; it changes nothing until a member signs it into the list."""
    rec = p.MemberRequestRecord(
        id=new_id("mreq"),
        member_id=req.member_id,
        recipient=req.recipient,
        ed25519=req.ed25519,
        note=req.note,
        requested_by=actor,
        created_at=time.time(),
    )
    with reg.engine.begin() as conn:
        reg.require_household(conn, household_id)
        open_count = len(
            conn.execute(select(db.member_requests.c.id).where(db.member_requests.c.household_id == household_id)).all()
        )
        if open_count >= MAX_REQUESTS:
            raise Conflict(f"the household already has {MAX_REQUESTS} open requests", code="too_many_requests")
        conn.execute(insert(db.member_requests).values(household_id=household_id, **msgspec.structs.asdict(rec)))
        write_audit(conn, actor, "member.request", household_id, rec.id, member=req.member_id)
    return rec


def requests(reg: Registry, household_id: str) -> list[p.MemberRequestRecord]:
    with reg.engine.connect() as conn:
        reg.require_household(conn, household_id)
        rows = conn.execute(
            select(db.member_requests)
            .where(db.member_requests.c.household_id == household_id)
            .order_by(db.member_requests.c.created_at)
        ).mappings()
        return [p.MemberRequestRecord(**{k: v for k, v in r.items() if k != "household_id"}) for r in rows]
