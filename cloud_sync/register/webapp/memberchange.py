"""The member list as the household's app changes it: the server proposes the exact bytes, the member's browser
checks and signs them, the server verifies before appending (:mod:`cloud_sync.register.memberlog`).

The register never signs and never holds a private key. It hands the browser the canonical body of the next
version (:func:`cloud_sync.memberlist.encode_body`) together with the body it follows, so the browser can check
the change is the one its member asked for (same household, next number, ``prev`` the digest of the version
before, the member set differing by exactly that change) before its Ed25519 key signs ``DOMAIN + body``. What
the browser sends back is appended only if it verifies as the hub will verify it, and only when it is signed by
the member of the session: a session cannot submit another member's signature under its own name.

A new member's public keys, made on their own device, wait as a member *request* (the register's existing
``member_requests``, ``requested_by = member:<id>``) until a current member signs them into the list; the signer
compares the new member's pairing code with the one their device shows, in the browser.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from typing import Literal

import msgspec
from sqlalchemy import and_, delete, insert, select

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p
from cloud_sync.register import db, memberlog
from cloud_sync.register.auth import new_id
from cloud_sync.register.errors import Conflict, Forbidden, Invalid, NotFound
from cloud_sync.register.registry import Registry, write_audit

Action = Literal["genesis", "add", "remove", "rotate"]
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class ChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the member asks for: ``add`` names a pending request, ``remove`` a member id, ``genesis`` and
    ``rotate`` carry the public keys the member's browser just made."""

    action: Action
    request: str = ""
    member: str = ""
    age: str = ""
    ed25519: str = ""


class Proposal(msgspec.Struct, frozen=True):
    """The bytes to check and sign: ``body`` is base64 of the canonical body, ``prev_body`` of the version it
    follows (empty for version 1); the browser signs ``DOMAIN + body`` (:data:`cloud_sync.memberlist.DOMAIN`)."""

    action: str
    version: int
    body: str
    prev_body: str
    domain: str = ml.DOMAIN.decode()


class KeysPosted(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A member's public keys from their own device: the age recipient and the Ed25519 key (hex)."""

    age: str
    ed25519: str


@dataclass(frozen=True)
class Member:
    """One member of the current list, as the members page shows them."""

    id: str
    name: str
    age: str
    ed25519: str
    pairing_code: str


def actor(member_id: str) -> str:
    return f"member:{member_id}"


def latest(reg: Registry, household_id: str) -> ml.Verified | None:
    """The newest stored version (already verified on append)."""
    with reg.engine.connect() as conn:
        return memberlog.latest(conn, household_id)


def names(reg: Registry, household_id: str) -> dict[str, str]:
    with reg.engine.connect() as conn:
        rows = conn.execute(
            select(db.members.c.id, db.members.c.name).where(db.members.c.household_id == household_id)
        ).all()
    return {r.id: r.name for r in rows}


def members(reg: Registry, household_id: str) -> tuple[int, list[Member]]:
    """The current version number and its members with their directory names (a member without a directory
    entry, e.g. after the household's erasure, shows as its id)."""
    current = latest(reg, household_id)
    if current is None:
        return 0, []
    known = names(reg, household_id)
    return current.version, [
        Member(m.id, known.get(m.id, ""), m.age, m.ed25519, ml.pairing_code(m.ed25519)) for m in current.body.members
    ]


def _entry(member_id: str, age: str, ed25519: str) -> ml.Entry:
    try:
        return msgspec.convert({"id": member_id, "age": age, "ed25519": ed25519}, ml.Entry)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid public keys: {exc}", code="bad_keys") from exc


def _require_listed(reg: Registry, household_id: str, member_id: str) -> ml.Verified:
    current = latest(reg, household_id)
    if current is None or current.member(member_id) is None:
        raise Forbidden("only a member of the current list can do this", code="not_a_member")
    return current


def invite(reg: Registry, household_id: str, name: str, *, by: str, now: float) -> str:
    """A directory entry for a person a member invites: a name only, no keys (they make theirs on their own device
    after enrolling with the one-time link). Returns the new member id."""
    _require_listed(reg, household_id, by)
    if not _NAME.fullmatch(name.strip()):
        raise Invalid("a name is 1 to 128 characters without control characters", code="bad_name")
    member_id = new_id("m")
    with reg.engine.begin() as conn:
        reg.require_household(conn, household_id)
        conn.execute(
            insert(db.members).values(
                id=member_id, household_id=household_id, name=name.strip(), email="", phone="", created_at=now
            )
        )
        write_audit(conn, actor(by), "member.invite", household_id, member_id)
    return member_id


def post_keys(reg: Registry, household_id: str, member_id: str, keys: KeysPosted) -> p.MemberRequestRecord:
    """A member's own public keys, waiting for a current member's signature. One pending set per member: a new
    one replaces the member's earlier ones (keys made again on another device, say)."""
    entry = _entry(member_id, keys.age, keys.ed25519)
    with reg.engine.begin() as conn:
        # The directory's recipient (what GET /v1/households/{h}/members shows) follows the member's own keys.
        conn.execute(delete(db.member_keys).where(db.member_keys.c.member_id == member_id))
        conn.execute(
            insert(db.member_keys).values(
                member_id=member_id, household_id=household_id, recipient=entry.age, created_at=time.time()
            )
        )
        conn.execute(
            delete(db.member_requests).where(
                db.member_requests.c.household_id == household_id,
                db.member_requests.c.member_id == member_id,
                db.member_requests.c.requested_by == actor(member_id),
            )
        )
    req = p.MemberRequest(member_id=entry.id, recipient=entry.age, ed25519=entry.ed25519, note="")
    return memberlog.file_request(reg, household_id, req, actor=actor(member_id))


def requests(reg: Registry, household_id: str) -> list[p.MemberRequestRecord]:
    """Open requests of members not yet in the list with those keys (what a signer may add)."""
    current = latest(reg, household_id)
    out = []
    for r in memberlog.requests(reg, household_id):
        held = current.member(r.member_id) if current is not None else None
        if held is None:
            out.append(r)
    return out


def _request(reg: Registry, household_id: str, request_id: str) -> p.MemberRequestRecord:
    for r in memberlog.requests(reg, household_id):
        if r.id == request_id:
            return r
    raise NotFound(f"no open member request {request_id!r} in this household", code="no_request")


def decline(reg: Registry, household_id: str, request_id: str, *, by: str) -> None:
    """A member of the list turns down a request (an operator's proposal, or keys they do not recognise); anyone
    may withdraw their own."""
    req = _request(reg, household_id, request_id)
    if req.member_id != by:
        _require_listed(reg, household_id, by)
    with reg.engine.begin() as conn:
        conn.execute(
            delete(db.member_requests).where(
                and_(db.member_requests.c.household_id == household_id, db.member_requests.c.id == request_id)
            )
        )
        write_audit(conn, actor(by), "member.request.decline", household_id, request_id)


def propose(reg: Registry, household_id: str, member_id: str, change: ChangeRequest) -> Proposal:
    """The canonical body of the next version with ``change`` made by ``member_id`` (the session's member)."""
    current = latest(reg, household_id)
    if change.action == "genesis":
        if current is not None:
            raise Conflict("the household already has a member list", code="member_list_stale")
        body = _make(household_id, 1, "", [_entry(member_id, change.age, change.ed25519)])
        return _proposal(change.action, body, b"")
    if current is None:
        raise Conflict("the household has no member list yet: start it first", code="no_member_list")
    current = _require_listed(reg, household_id, member_id)
    entries = list(current.body.members)
    if change.action == "add":
        req = _request(reg, household_id, change.request)
        if current.member(req.member_id) is not None:
            raise Conflict(f"{req.member_id} is already a member", code="already_member")
        entries.append(_entry(req.member_id, req.recipient, req.ed25519))
    elif change.action == "remove":
        if current.member(change.member) is None:
            raise NotFound(f"{change.member!r} is not a member", code="no_member")
        entries = [m for m in entries if m.id != change.member]
        if not entries:
            raise Conflict("a household keeps at least one member", code="last_member")
    else:  # rotate: the member's new keys, signed with the old key the hubs still trust
        new = _entry(member_id, change.age, change.ed25519)
        entries = [new if m.id == member_id else m for m in entries]
    body = _make(household_id, current.version + 1, current.digest, entries)
    return _proposal(change.action, body, current.body_bytes)


def _make(household_id: str, version: int, prev: str, entries: list[ml.Entry]) -> bytes:
    if len(entries) > ml.MAX_MEMBERS:
        raise Conflict(f"a household has at most {ml.MAX_MEMBERS} members", code="too_many_members")
    try:
        return ml.encode_body(ml.make_body(household_id, version, prev, entries))
    except ml.MemberListError as exc:  # e.g. a key already used by another member
        raise Invalid(str(exc), code="member_list_malformed") from exc


def _proposal(action: str, body: bytes, prev_body: bytes) -> Proposal:
    version = ml.decode_body(body).version
    return Proposal(
        action=action,
        version=version,
        body=base64.b64encode(body).decode(),
        prev_body=base64.b64encode(prev_body).decode(),
    )


def submit(reg: Registry, household_id: str, member_id: str, signed: p.SignedMemberList) -> p.MemberLogEntry:
    """Appends a version the session's member signed in their browser, after the register's full check."""
    if signed.signer != member_id:
        raise Forbidden("a member signs the list as themselves", code="signer_not_session")
    entry = memberlog.append(reg, household_id, signed, actor=actor(member_id))
    body, _ = ml.open_signed(signed)
    with reg.engine.begin() as conn:
        # Requests now in the list with exactly those keys are done.
        for m in body.members:
            conn.execute(
                delete(db.member_requests).where(
                    db.member_requests.c.household_id == household_id,
                    db.member_requests.c.member_id == m.id,
                    db.member_requests.c.recipient == m.age,
                    db.member_requests.c.ed25519 == m.ed25519,
                )
            )
    return entry


def chain(reg: Registry, household_id: str, *, after: int = 0) -> list[p.SignedMemberList]:
    """The stored versions after ``after``, oldest first, for the browser's own audit of the log."""
    return [e.signed for e in memberlog.entries(reg, household_id, after=after, limit=memberlog.MAX_PAGE)]
