"""Passkeys (WebAuthn) with the ``webauthn`` library: the registration ceremony for a member enrolling a device,
the authentication ceremony for signing in, and the stored credentials (public key and signature counter).

A ceremony is a server-side challenge with a short life, used once: the browser gets its id with the options and
sends it back with the answer. Nothing about a ceremony is in a cookie, so there is no pre-sign-in session to fix.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import webauthn
from sqlalchemy import Connection, delete, insert, select, update
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers import exceptions as wx
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from cloud_sync.register import db
from cloud_sync.register.errors import Unauthenticated
from cloud_sync.register.registry import write_audit
from cloud_sync.register.webapp import schema
from cloud_sync.register.webapp.context import WebContext

log = logging.getLogger(__name__)

CEREMONY_TTL_S: Final = 300.0
TIMEOUT_MS: Final = 120_000
MAX_CREDENTIAL_JSON: Final = 16 * 1024
"""A browser's answer is a few KB; anything larger is refused before parsing."""


@dataclass(frozen=True)
class Member:
    member_id: str
    household_id: str


def _new_ceremony(ctx: WebContext, kind: str, challenge: bytes, member_id: str | None) -> str:
    cid = secrets.token_urlsafe(24)
    now = ctx.clock()
    with ctx.reg.engine.begin() as conn:
        # Old ceremonies go here rather than in a background task: each new one clears the expired.
        conn.execute(delete(schema.ceremonies).where(schema.ceremonies.c.expires_at < now))
        conn.execute(
            insert(schema.ceremonies).values(
                id=cid, kind=kind, challenge=challenge, member_id=member_id, expires_at=now + CEREMONY_TTL_S
            )
        )
    return cid


def _take_ceremony(ctx: WebContext, cid: str, kind: str) -> tuple[bytes, str | None]:
    """The ceremony's challenge and member, deleting it (an answer is checked against a challenge once)."""
    c = schema.ceremonies.c
    with ctx.reg.engine.begin() as conn:
        row = conn.execute(
            delete(schema.ceremonies)
            .where(c.id == cid[:64], c.kind == kind)
            .returning(c.challenge, c.member_id, c.expires_at)
        ).first()
    if row is None or row.expires_at < ctx.clock():
        raise Unauthenticated("this sign-in attempt has expired; start again", code="ceremony_expired")
    return bytes(row.challenge), row.member_id


def registration_options(ctx: WebContext, member_id: str) -> dict[str, Any]:
    """Options for ``navigator.credentials.create`` for ``member_id`` (a discoverable credential, user
    verification required), with the ceremony id to send back."""
    with ctx.reg.engine.connect() as conn:
        name = conn.execute(select(db.members.c.name).where(db.members.c.id == member_id)).scalar_one_or_none()
        if name is None:
            raise Unauthenticated("this member no longer exists", code="no_member")
        existing = conn.execute(
            select(schema.passkeys.c.credential_id).where(schema.passkeys.c.member_id == member_id)
        ).scalars()
        exclude = [PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(x)) for x in existing]
    options = webauthn.generate_registration_options(
        rp_id=ctx.rp_id,
        rp_name="Kotihub",
        user_id=member_id.encode(),
        user_name=name,
        user_display_name=name,
        timeout=TIMEOUT_MS,
        exclude_credentials=exclude,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    cid = _new_ceremony(ctx, "register", options.challenge, member_id)
    return {"ceremony": cid, "options": _json(webauthn.options_to_json(options))}


def register(
    ctx: WebContext, cid: str, credential: str, *, consume: Callable[[Connection], str] | None = None
) -> Member:
    """Verifies the browser's answer to :func:`registration_options` and stores the passkey. ``consume`` (using up
    the one-time link) runs in the transaction that stores it and must name the ceremony's member: a passkey is
    stored only with its link used up, and a link is used up only by a passkey stored."""
    challenge, member_id = _take_ceremony(ctx, cid, "register")
    if member_id is None:
        raise Unauthenticated("this sign-in attempt has expired; start again", code="ceremony_expired")
    _size(credential)
    try:
        v = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=ctx.rp_id,
            expected_origin=ctx.origin,
            require_user_verification=True,
        )
    except (wx.WebAuthnException, ValueError, KeyError, TypeError) as exc:
        log.info("a passkey registration was refused: %s", type(exc).__name__)
        raise Unauthenticated("the passkey could not be verified", code="passkey_refused") from exc
    now = ctx.clock()
    with ctx.reg.engine.begin() as conn:
        if consume is not None and consume(conn) != member_id:
            raise Unauthenticated("this link is for another member", code="link_invalid")
        household_id = conn.execute(
            select(db.members.c.household_id).where(db.members.c.id == member_id)
        ).scalar_one_or_none()
        if household_id is None:
            raise Unauthenticated("this member no longer exists", code="no_member")
        cred_id = _b64(v.credential_id)
        conn.execute(
            insert(schema.passkeys).values(
                credential_id=cred_id,
                member_id=member_id,
                household_id=household_id,
                public_key=v.credential_public_key,
                sign_count=v.sign_count,
                transports=[],
                created_at=now,
            )
        )
        write_audit(conn, f"member:{member_id}", "app.passkey.add", household_id, member_id)
    return Member(member_id, household_id)


def authentication_options(ctx: WebContext) -> dict[str, Any]:
    """Options for ``navigator.credentials.get``: any of this site's passkeys (discoverable), so the page need not
    ask who is signing in."""
    options = webauthn.generate_authentication_options(
        rp_id=ctx.rp_id, timeout=TIMEOUT_MS, user_verification=UserVerificationRequirement.REQUIRED
    )
    cid = _new_ceremony(ctx, "authenticate", options.challenge, None)
    return {"ceremony": cid, "options": _json(webauthn.options_to_json(options))}


def authenticate(ctx: WebContext, cid: str, credential: str) -> Member:
    """Verifies the browser's answer to :func:`authentication_options` against the stored passkey and advances its
    signature counter (compare-and-set: of two answers with the same counter, one wins)."""
    challenge, _ = _take_ceremony(ctx, cid, "authenticate")
    _size(credential)
    try:
        credential_id = json.loads(credential)["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthenticated("the passkey answer is not a credential", code="passkey_refused") from exc
    if not isinstance(credential_id, str) or not 0 < len(credential_id) <= 512:
        raise Unauthenticated("the passkey answer is not a credential", code="passkey_refused")
    p = schema.passkeys.c
    with ctx.reg.engine.connect() as conn:
        row = conn.execute(
            select(p.member_id, p.household_id, p.public_key, p.sign_count).where(p.credential_id == credential_id)
        ).first()
    if row is None:
        raise Unauthenticated("this passkey is not known here", code="passkey_unknown")
    try:
        v = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=ctx.rp_id,
            expected_origin=ctx.origin,
            credential_public_key=bytes(row.public_key),
            credential_current_sign_count=row.sign_count,
            require_user_verification=True,
        )
    except (wx.WebAuthnException, ValueError, KeyError, TypeError) as exc:
        # A counter that did not grow lands here too: a cloned authenticator, or a replay.
        log.info("a passkey sign-in was refused: %s", type(exc).__name__)
        raise Unauthenticated("the passkey could not be verified", code="passkey_refused") from exc
    if _b64(v.credential_id) != credential_id:
        raise Unauthenticated("the answer is for another passkey", code="passkey_refused")
    with ctx.reg.engine.begin() as conn:
        won = conn.execute(
            update(schema.passkeys)
            .where(p.credential_id == credential_id, p.sign_count == row.sign_count)
            .values(sign_count=v.new_sign_count, last_used_at=ctx.clock())
        ).rowcount
        if won != 1:
            raise Unauthenticated("this passkey was used meanwhile; try again", code="passkey_refused")
    return Member(row.member_id, row.household_id)


def count(ctx: WebContext, member_id: str) -> int:
    with ctx.reg.engine.connect() as conn:
        return len(
            conn.execute(select(schema.passkeys.c.credential_id).where(schema.passkeys.c.member_id == member_id)).all()
        )


def _size(credential: str) -> None:
    if len(credential) > MAX_CREDENTIAL_JSON:
        raise Unauthenticated("the passkey answer is too large", code="passkey_refused")


def _b64(raw: bytes) -> str:
    return bytes_to_base64url(raw)


def _json(text: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(text)
    return out
