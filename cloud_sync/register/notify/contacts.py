"""Contacts (per member: phone, e-mail, language, call order) and the household's escalation policy.

Both are personal data of the household: changes are audited with the names of the fields only, operator reads
are audited, and both go with the household's export and erasure.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import select

from cloud_sync.register import db
from cloud_sync.register.auth import Principal
from cloud_sync.register.errors import Invalid, NotFound
from cloud_sync.register.notify import alarms, schema
from cloud_sync.register.notify.policy import Policy, decode_policy, policy_json
from cloud_sync.register.registry import Registry, write_audit

Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^(\+[1-9][0-9]{6,14})?\Z")]
Email = Annotated[str, msgspec.Meta(max_length=254, pattern="^([^@\\s]+@[^@\\s]+)?\\Z")]


class Contact(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``PUT /v1/households/{h}/members/{m}/contact``: phone in E.164 (``+358…``), e-mail, ``fi`` or ``en``, and
    the member's place in the call order (lower first)."""

    phone: Phone = ""
    email: Email = ""
    language: Literal["fi", "en"] = "fi"
    call_order: Annotated[int, msgspec.Meta(ge=0, le=99)] = 0


class ContactView(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    name: str
    phone: str
    email: str
    language: str
    call_order: int


def set_contact(registry: Registry, household_id: str, member_id: str, contact: Contact, *, actor: str) -> None:
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        owner = conn.execute(select(db.members.c.household_id).where(db.members.c.id == member_id)).scalar()
        if owner != household_id:
            raise NotFound(f"no member {member_id!r} in this household", code="no_member")
        values = {**msgspec.structs.asdict(contact), "updated_at": time.time()}
        stmt = db.upsert(registry.engine, schema.contacts, [*values, "household_id"])
        conn.execute(stmt, [{"member_id": member_id, "household_id": household_id, **values}])
        write_audit(conn, actor, "contact.change", household_id, member_id, fields=sorted(values))


def contacts(registry: Registry, household_id: str, reader: Principal | None = None) -> list[ContactView]:
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        people = alarms.recipients(conn, household_id)
        orders = dict(
            conn.execute(
                select(schema.contacts.c.member_id, schema.contacts.c.call_order).where(
                    schema.contacts.c.household_id == household_id
                )
            ).all()
        )
        if reader is not None and reader.is_operator:
            write_audit(conn, reader.actor, "contacts.read", household_id)
    return [
        ContactView(
            member_id=p["member_id"],
            name=p["name"],
            phone=p["phone"],
            email=p["email"],
            language=p["language"],
            call_order=int(orders.get(p["member_id"], 0)),
        )
        for p in people
    ]


def get_policy(registry: Registry, household_id: str, reader: Principal | None = None) -> Policy:
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        if reader is not None and reader.is_operator:
            write_audit(conn, reader.actor, "policy.read", household_id)
        return alarms.load_policy(conn, household_id)


def set_policy(registry: Registry, household_id: str, raw: Any, *, actor: str) -> Policy:
    try:
        policy = decode_policy(raw)
    except (msgspec.ValidationError, ValueError) as exc:
        raise Invalid(f"invalid escalation policy: {exc}") from exc
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        stmt = db.upsert(registry.engine, schema.escalation_policies, ["policy", "updated_at"])
        conn.execute(stmt, [{"household_id": household_id, "policy": policy_json(policy), "updated_at": time.time()}])
        write_audit(conn, actor, "policy.change", household_id)
    return policy
