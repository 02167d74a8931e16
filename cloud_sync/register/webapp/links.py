"""One-time links that let a member enrol a new device (register a passkey on it): 256-bit random, single use,
short-lived, only their SHA-256 stored. Sent by SMS or e-mail through the notification providers, or printed by
``kotihub-register app-link`` for a technician (and by ``kotihub demo``)."""

from __future__ import annotations

import logging
import secrets
from typing import Any, Final

from sqlalchemy import Connection, Row, insert, select, update

from cloud_sync.register import db
from cloud_sync.register.auth import hash_token
from cloud_sync.register.errors import Invalid, NotFound, Unauthenticated
from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.notify.providers import Outgoing, Provider
from cloud_sync.register.registry import Registry, write_audit
from cloud_sync.register.webapp import schema
from cloud_sync.register.webapp.i18n import register_texts, t

log = logging.getLogger(__name__)

LINK_TTL_S: Final = 15 * 60
MAX_LINK_TTL_S: Final = 24 * 3600
PATH: Final = "/app/enrol/"


def create(reg: Registry, member_id: str, *, actor: str, now: float, ttl_s: float = LINK_TTL_S) -> str:
    """A new one-time link token for ``member_id`` (returned once, never stored)."""
    if not 0 < ttl_s <= MAX_LINK_TTL_S:
        raise Invalid(f"a sign-in link lives between 1 s and {MAX_LINK_TTL_S} s")
    token = secrets.token_urlsafe(32)
    with reg.engine.begin() as conn:
        household_id = conn.execute(
            select(db.members.c.household_id).where(db.members.c.id == member_id)
        ).scalar_one_or_none()
        if household_id is None:
            raise NotFound(f"no member {member_id!r}", code="no_member")
        conn.execute(
            insert(schema.signin_links).values(
                token_hash=hash_token(token),
                member_id=member_id,
                household_id=household_id,
                created_at=now,
                expires_at=now + ttl_s,
            )
        )
        write_audit(conn, actor, "app.link.create", household_id, member_id, ttl_s=ttl_s)
    return token


def url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}{token}"


def peek(reg: Registry, token: str, *, now: float) -> str:
    """The member a live link is for, without using it up (the page behind a link only shows a button: link
    previewers fetch links)."""
    row = _row(reg, token)
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise Unauthenticated("this link has expired or was already used; ask for a new one", code="link_invalid")
    return str(row.member_id)


def consume(conn: Connection, token: str, *, now: float) -> str:
    """Uses the link up in the caller's transaction (once: of two concurrent uses one wins); returns its member."""
    c = schema.signin_links.c
    won = conn.execute(
        update(schema.signin_links)
        .where(c.token_hash == hash_token(token), c.used_at.is_(None), c.expires_at > now)
        .values(used_at=now)
        .returning(c.member_id, c.household_id)
    ).first()
    if won is None:
        raise Unauthenticated("this link has expired or was already used; ask for a new one", code="link_invalid")
    write_audit(conn, f"member:{won.member_id}", "app.link.use", won.household_id, won.member_id)
    return str(won.member_id)


def send(
    reg: Registry,
    provider: Provider,
    channel: str,
    member_id: str,
    public_url: str,
    *,
    actor: str,
    now: float,
    ttl_s: float = LINK_TTL_S,
) -> str:
    """Creates a link and sends it to the member's phone (``sms``) or e-mail (``email``); returns the provider's
    reference. The address is never logged."""
    m, c = db.members.c, notify_schema.contacts.c
    with reg.engine.connect() as conn:
        row = conn.execute(
            select(m.phone, m.email, c.phone.label("c_phone"), c.email.label("c_email"))
            .select_from(db.members.outerjoin(notify_schema.contacts, c.member_id == m.id))
            .where(m.id == member_id)
        ).first()
    if row is None:
        raise NotFound(f"no member {member_id!r}", code="no_member")
    # The alarm contact first (the household keeps it current for alarms), else the member directory's.
    to = (row.c_phone or row.phone) if channel == "sms" else (row.c_email or row.email)
    if not to:
        raise Invalid(f"the member has no {'phone number' if channel == 'sms' else 'e-mail address'}")
    token = create(reg, member_id, actor=actor, now=now, ttl_s=ttl_s)
    link = url(public_url, token)
    # Both languages: the member's choice is not known before they sign in.
    text = f"{t('link.text', 'fi')} {link}\n{t('link.text', 'en')} {link}"
    subject = f"{t('link.subject', 'fi')} / {t('link.subject', 'en')}"
    msg = Outgoing(job_id=f"applink-{hash_token(token)[:16]}", channel=channel, to=to, text=text, subject=subject)
    ref = provider.send(msg)
    log.info("sent a one-time sign-in link by %s", channel)
    return ref


def _row(reg: Registry, token: str) -> Row[Any, Any, Any] | None:
    if not token or len(token) > 128:
        return None
    c = schema.signin_links.c
    with reg.engine.connect() as conn:
        return conn.execute(
            select(c.member_id, c.used_at, c.expires_at).where(c.token_hash == hash_token(token))
        ).first()


register_texts(
    {
        "fi": {
            "link.subject": "Kotihub-kirjautumislinkki",
            "link.text": "Ota Kotihub käyttöön laitteellasi (linkki toimii kerran ja vanhenee pian):",
        },
        "en": {
            "link.subject": "Kotihub sign-in link",
            "link.text": "Set up Kotihub on your device (the link works once and expires soon):",
        },
    }
)
