"""Member sessions: a random token in a cookie, only its hash in the database, short-lived, and a CSRF token.

A session is created only by a completed sign-in (a new token every time: a token planted before sign-in is never
the one after), lasts :data:`IDLE_S` without use and :data:`ABSOLUTE_S` at most, and dies with its member.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, HTTPException
from sqlalchemy import delete, insert, select, update
from starlette.requests import Request
from starlette.responses import Response

from cloud_sync.register import db
from cloud_sync.register.auth import hash_token
from cloud_sync.register.registry import write_audit
from cloud_sync.register.webapp import schema
from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import pick_lang

COOKIE: Final = "kh_session"
IDLE_S: Final = 30 * 60
ABSOLUTE_S: Final = 12 * 3600
TOUCH_EVERY_S: Final = 60.0
"""``last_seen`` is written at most this often per session (a page load is then a read only)."""
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"


@dataclass(frozen=True)
class MemberSession:
    member_id: str
    household_id: str
    lang: str
    csrf_token: str

    @property
    def actor(self) -> str:
        """Who did it, in the audit table."""
        return f"member:{self.member_id}"


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.state.webapp
    return ctx


def start(ctx: WebContext, response: Response, member_id: str, household_id: str, *, old: str | None) -> str:
    """Signs the member in: ends the session the browser presented (if any), creates a new one and sets its
    cookie on ``response``. Returns the CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = ctx.clock()
    with ctx.reg.engine.begin() as conn:
        if old:
            conn.execute(delete(schema.sessions).where(schema.sessions.c.token_hash == hash_token(old)))
        conn.execute(
            insert(schema.sessions).values(
                token_hash=hash_token(token),
                member_id=member_id,
                household_id=household_id,
                csrf_token=csrf,
                created_at=now,
                last_seen=now,
            )
        )
        write_audit(conn, f"member:{member_id}", "app.signin", household_id, member_id)
    response.set_cookie(COOKIE, token, max_age=ABSOLUTE_S, path="/app", secure=True, httponly=True, samesite="strict")
    return csrf


def end(ctx: WebContext, request: Request, response: Response) -> None:
    """Signs out: the session row goes, the cookie is cleared."""
    token = request.cookies.get(COOKIE)
    if token:
        with ctx.reg.engine.begin() as conn:
            row = conn.execute(
                delete(schema.sessions)
                .where(schema.sessions.c.token_hash == hash_token(token))
                .returning(schema.sessions.c.member_id, schema.sessions.c.household_id)
            ).first()
            if row is not None:
                write_audit(conn, f"member:{row.member_id}", "app.signout", row.household_id, row.member_id)
    response.delete_cookie(COOKIE, path="/app", secure=True, httponly=True, samesite="strict")


def lookup(ctx: WebContext, token: str | None, lang: str) -> MemberSession | None:
    """The live session for ``token``, touched; None if unknown, idle too long, too old or its member is gone."""
    if not token or len(token) > 128:
        return None
    h = hash_token(token)
    now = ctx.clock()
    s = schema.sessions.c
    with ctx.reg.engine.begin() as conn:
        row = conn.execute(
            select(s.member_id, s.household_id, s.csrf_token, s.created_at, s.last_seen)
            .join(db.members, db.members.c.id == s.member_id)
            .where(s.token_hash == h, db.members.c.household_id == s.household_id)
        ).first()
        if row is None:
            return None
        if now - row.last_seen > IDLE_S or now - row.created_at > ABSOLUTE_S:
            conn.execute(delete(schema.sessions).where(s.token_hash == h))
            return None
        if now - row.last_seen > TOUCH_EVERY_S:
            conn.execute(update(schema.sessions).where(s.token_hash == h).values(last_seen=now))
    return MemberSession(row.member_id, row.household_id, lang, row.csrf_token)


def member_session(request: Request) -> MemberSession:
    """FastAPI dependency: the signed-in member, or a redirect to sign-in (GET) / 401 (anything else)."""
    found = lookup(_ctx(request), request.cookies.get(COOKIE), pick_lang(request))
    if found is not None:
        return found
    if request.method in ("GET", "HEAD"):
        raise HTTPException(303, "sign in first", headers={"Location": "/app/signin"})
    raise HTTPException(401, "sign in first")


Member = Annotated[MemberSession, Depends(member_session)]


async def csrf_checked(request: Request, session: Member) -> MemberSession:
    """FastAPI dependency for every state-changing request: the session's CSRF token must come back in the form
    field ``csrf`` or the header ``X-CSRF-Token`` (compared in constant time)."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise HTTPException(403, "missing or wrong CSRF token")
    return session


Checked = Annotated[MemberSession, Depends(csrf_checked)]
