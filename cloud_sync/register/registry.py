"""The register's control plane: households, members, consents, tokens, enrollment, commands and the audit log.

One :class:`Registry` is shared by the HTTP app and the CLI. Every change to personal data and every operator
read of it writes an audit row in the same transaction as the change, so there is no change without its record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from cloud_sync.protocol import (
    COMMAND_KINDS,
    Command,
    CommandResult,
    Consent,
    EnrollRequest,
    EnrollResponse,
    Member,
    MemberCreate,
    RenewResponse,
)
from cloud_sync.register import db
from cloud_sync.register.auth import ROLES, HubIdentity, Principal, hash_token, new_id, new_token
from cloud_sync.register.blobstore import BlobStore, FileBlobStore
from cloud_sync.register.ca import CertificateAuthority, fingerprint
from cloud_sync.register.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from cloud_sync.register.lastseen import DeferredLastSeen
from cloud_sync.register.notify import schema as _notify_tables  # noqa: F401 -- their tables are created with ours
from cloud_sync.register.restriction_table import restrictions as _restrictions  # noqa: F401 -- likewise
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp import schema as _app_tables  # noqa: F401 -- the app's sign-in tables, likewise

log = logging.getLogger(__name__)

_SHOWN_HOUSEHOLD = [c for c in db.households.c if c.name != "watched_until"]
"""A household's columns as the operator and the API show them: not when a member last had the app open
(cloud_sync.register.watching), which is the hubs' business only."""

URGENT_POOL = 8
"""PostgreSQL connections of a process kept for the alarm lane alone (:attr:`Registry.urgent_engine`). Under load an
alarm's transaction waits on PostgreSQL (its commit's WAL flush behind bulk COPYs) some hundreds of ms; eight at
once keep a burst of alarms from queueing for them."""

MAX_COMMAND_ARGS_BYTES = 64 * 1024
"""A queued command's arguments as JSON, the register's own ``member_keys`` list included."""


def write_audit(
    conn: Connection, actor: str, action: str, household_id: str | None, target: str = "", **detail: object
) -> None:
    """One audit row (who, what, when, on whose data) in the caller's transaction. ``detail`` holds counts and
    flags, never the personal data itself."""
    conn.execute(
        insert(db.audit).values(
            at=time.time(),
            actor=actor,
            household_id=household_id,
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True, default=str) if detail else "",
        )
    )


class Registry:
    """The register's state: database engine, CA and blob store, with the operations on them."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        blobs: BlobStore | None = None,
        urgent_pre_ping: bool = True,
    ) -> None:
        """``urgent_pre_ping``: False in the alarm listener, whose hubs resend a failed alarm to the main port at
        once (:mod:`cloud_sync.register.alarm_listener`)."""
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.engine = engine or db.open_engine(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        # The alarm lane's own pool on PostgreSQL (connections open when first used), so a smoke alarm never waits
        # for a connection bulk ingest or any other route holds. SQLite has one writer anyway (ingest.WriteGate).
        self.urgent_engine = (
            self.engine
            if self.engine.dialect.name == "sqlite"
            else db.open_engine(
                self.engine.url.render_as_string(hide_password=False),
                create=False,
                pool_size=URGENT_POOL,
                max_overflow=0,
                pre_ping=urgent_pre_ping,
            )
        )
        self.ca = CertificateAuthority.load_or_create(settings.state_dir)
        self.blobs: BlobStore = blobs or FileBlobStore(settings.blob_path)
        self._hub_seen: dict[str, float] = {}
        # The alarm lane's last-seen writes, off its path (PostgreSQL only: SQLite's alarm lane shares the engine).
        self._deferred_seen = DeferredLastSeen(self.engine)

    def close(self) -> None:
        self._deferred_seen.close()
        if self.urgent_engine is not self.engine:
            self.urgent_engine.dispose()
        self.engine.dispose()

    # ------------------------------------------------------------------------------------------ households

    def create_household(self, name: str, *, actor: str) -> str:
        if not name or len(name) > 256:
            raise Invalid("household name must be 1 to 256 characters")
        hid = new_id("hh")
        with self.engine.begin() as conn:
            now = time.time()
            conn.execute(insert(db.households).values(id=hid, name=name, created_at=now))
            conn.execute(
                insert(db.consents).values(household_id=hid, marketing=False, marketing_ban=False, updated_at=now)
            )
            write_audit(conn, actor, "household.create", hid)
        return hid

    def list_households(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_SHOWN_HOUSEHOLD).order_by(db.households.c.created_at)).mappings().all()
        return [dict(r) for r in rows]

    def require_household(self, conn: Connection, household_id: str) -> dict[str, Any]:
        row = conn.execute(select(*_SHOWN_HOUSEHOLD).where(db.households.c.id == household_id)).mappings().first()
        if row is None:
            raise NotFound(f"no household {household_id!r}", code="no_household")
        return dict(row)

    def household(self, household_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = self.require_household(conn, household_id)
            row["hubs"] = self._hubs(conn, household_id)
            row["members"] = (
                conn.execute(select(db.members.c.id).where(db.members.c.household_id == household_id)).scalars().all()
            )
        return row

    # --------------------------------------------------------------------------------------------- members

    def add_member(
        self, household_id: str, name: str, recipient: str, *, email: str = "", phone: str = "", actor: str
    ) -> Member:
        try:
            msgspec.convert({"name": name, "recipient": recipient, "email": email, "phone": phone}, MemberCreate)
        except msgspec.ValidationError as exc:
            raise Invalid(f"invalid member: {exc}") from exc
        mid = new_id("m")
        now = time.time()
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            conn.execute(
                insert(db.members).values(
                    id=mid, household_id=household_id, name=name, email=email, phone=phone, created_at=now
                )
            )
            conn.execute(
                insert(db.member_keys).values(
                    member_id=mid, household_id=household_id, recipient=recipient, created_at=now
                )
            )
            # A directory entry (name, contacts) only: the key reaches no hub until a member signs it into the
            # household's member list (cloud_sync/register/memberlog.py).
            write_audit(conn, actor, "member.add", household_id, mid)
        return Member(member_id=mid, name=name, recipient=recipient, email=email, phone=phone)

    def remove_member(self, household_id: str, member_id: str, *, actor: str) -> None:
        with self.engine.begin() as conn:
            where = and_(db.members.c.id == member_id, db.members.c.household_id == household_id)
            if conn.execute(select(db.members.c.id).where(where)).first() is None:
                raise NotFound(f"no member {member_id!r} in this household", code="no_member")
            conn.execute(delete(db.member_keys).where(db.member_keys.c.member_id == member_id))
            conn.execute(delete(db.members).where(where))
            write_audit(conn, actor, "member.remove", household_id, member_id)

    def update_member(self, household_id: str, member_id: str, changes: dict[str, str], *, actor: str) -> None:
        """Rectify a member's name, email or phone; audited with the names of the changed fields only."""
        allowed = {"name", "email", "phone"}
        if not changes or set(changes) - allowed:
            raise Invalid(f"give at least one of {', '.join(sorted(allowed))}")
        with self.engine.begin() as conn:
            where = and_(db.members.c.id == member_id, db.members.c.household_id == household_id)
            if conn.execute(update(db.members).where(where).values(**changes)).rowcount != 1:
                raise NotFound(f"no member {member_id!r} in this household", code="no_member")
            write_audit(conn, actor, "member.rectify", household_id, member_id, fields=sorted(changes))

    def members(self, household_id: str, *, reader: Principal | None = None) -> list[Member]:
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            rows = conn.execute(
                select(db.members, db.member_keys.c.recipient)
                .join(db.member_keys, db.member_keys.c.member_id == db.members.c.id)
                .where(db.members.c.household_id == household_id)
                .order_by(db.members.c.created_at)
            ).mappings()
            out = [
                Member(member_id=r["id"], name=r["name"], recipient=r["recipient"], email=r["email"], phone=r["phone"])
                for r in rows
            ]
            if reader is not None and reader.is_operator:
                write_audit(conn, reader.actor, "members.read", household_id)
        return out

    # -------------------------------------------------------------------------------------------- consents

    def consent(self, household_id: str, *, reader: Principal | None = None) -> Consent:
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            row = conn.execute(select(db.consents).where(db.consents.c.household_id == household_id)).mappings().first()
            if row is None:  # erased household: no consent on record
                return Consent(marketing=False, marketing_ban=False, updated_at=0.0)
            if reader is not None and reader.is_operator:
                write_audit(conn, reader.actor, "consents.read", household_id)
        return Consent(marketing=row["marketing"], marketing_ban=row["marketing_ban"], updated_at=row["updated_at"])

    def set_consent(self, household_id: str, *, marketing: bool, marketing_ban: bool, actor: str) -> Consent:
        if marketing and marketing_ban:
            raise Invalid("marketing consent and a marketing ban cannot both be set", code="contradiction")
        now = time.time()
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            values = {"marketing": marketing, "marketing_ban": marketing_ban, "updated_at": now}
            conn.execute(db.upsert(self.engine, db.consents, list(values)), [{"household_id": household_id, **values}])
            write_audit(conn, actor, "consents.change", household_id, marketing=marketing, marketing_ban=marketing_ban)
        return Consent(marketing=marketing, marketing_ban=marketing_ban, updated_at=now)

    # ---------------------------------------------------------------------------------------------- tokens

    def create_enroll_token(self, household_id: str, *, ttl_s: int | None = None, actor: str) -> str:
        ttl = self.settings.enroll_token_ttl_s if ttl_s is None else ttl_s
        if not 1 <= ttl <= 86_400:
            raise Invalid("ttl must be between 1 and 86400 seconds")
        token = new_token("kh_enroll")
        now = time.time()
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            conn.execute(
                insert(db.enroll_tokens).values(
                    token_hash=hash_token(token), household_id=household_id, created_at=now, expires_at=now + ttl
                )
            )
            write_audit(conn, actor, "enroll_token.create", household_id, ttl_s=ttl)
        return token

    def create_api_token(self, role: str, household_id: str | None = None, *, actor: str) -> str:
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        if (role == "household") != (household_id is not None):
            raise Invalid("a household token needs --household; operator tokens must not have one")
        token = new_token("kh_api")
        with self.engine.begin() as conn:
            if household_id is not None:
                self.require_household(conn, household_id)
            tid = new_id("tok")
            conn.execute(
                insert(db.api_tokens).values(
                    id=tid, token_hash=hash_token(token), role=role, household_id=household_id, created_at=time.time()
                )
            )
            write_audit(conn, actor, "api_token.create", household_id, tid, role=role)
        return token

    def principal(self, token: str) -> Principal:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(db.api_tokens).where(db.api_tokens.c.token_hash == hash_token(token)))
                .mappings()
                .first()
            )
        if row is None or row["revoked"]:
            raise Unauthenticated("unknown or revoked API token", code="bad_token")
        return Principal(token_id=row["id"], role=row["role"], household_id=row["household_id"])

    # ------------------------------------------------------------------------------------------ enrollment

    def enroll_token_household(self, token: str) -> str | None:
        """The household an enrollment token was made for (used or not), or None for an unknown token."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(db.enroll_tokens.c.household_id).where(db.enroll_tokens.c.token_hash == hash_token(token))
            ).scalar()

    def enroll(self, req: EnrollRequest) -> EnrollResponse:
        from cloud_sync.register import memberlog

        now = time.time()
        token_hash = hash_token(req.token)
        hub_id = new_id("hub")
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(db.enroll_tokens).where(db.enroll_tokens.c.token_hash == token_hash))
                .mappings()
                .first()
            )
            if row is None:
                raise Unauthenticated("unknown enrollment token", code="token_unknown")
            if row["used_at"] is not None:
                raise Forbidden("enrollment token was already used", code="token_used")
            if row["expires_at"] <= now:
                raise Forbidden("enrollment token has expired", code="token_expired")
            household_id = row["household_id"]
            cert = self.ca.sign_hub_csr(
                req.csr_pem, hub_id=hub_id, household_id=household_id, days=self.settings.hub_cert_days
            )
            # Conditional update: of two concurrent enrollments with one token, exactly one wins.
            claimed = conn.execute(
                update(db.enroll_tokens)
                .where(db.enroll_tokens.c.token_hash == token_hash, db.enroll_tokens.c.used_at.is_(None))
                .values(used_at=now, hub_id=hub_id)
            ).rowcount
            if claimed != 1:
                raise Forbidden("enrollment token was already used", code="token_used")
            conn.execute(
                insert(db.hubs).values(
                    id=hub_id,
                    household_id=household_id,
                    name=req.hub_name,
                    cert_sha256=fingerprint(cert),
                    enrolled_at=now,
                    last_seen=now,
                    revoked=False,
                )
            )
            write_audit(conn, f"hub:{hub_id}", "hub.enroll", household_id, hub_id)
            member_log = memberlog.chain(conn, household_id)
            memberlog.record_hub_version(self, conn, hub_id, len(member_log))
        log.info("enrolled hub %s", hub_id)
        return EnrollResponse(
            hub_id=hub_id,
            household_id=household_id,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            ca_pem=self.ca.cert_pem.decode(),
            member_log=member_log,
        )

    def renew(self, hub: HubIdentity, csr_pem: str) -> RenewResponse:
        """A new certificate for the hub's new key (same identity).

        The new certificate is *pending* until the hub first presents it; that first use retires the old one (see
        :meth:`check_hub`). Until then the old certificate keeps working, so a lost reply costs nothing: the hub
        renews again and the newer pending certificate replaces the unused one. Only the current certificate may
        renew, never a pending or retired one.
        """
        cert = self.ca.sign_hub_csr(
            csr_pem, hub_id=hub.hub_id, household_id=hub.household_id, days=self.settings.hub_cert_days
        )
        with self.engine.begin() as conn:
            conn.execute(delete(db.pending_certs).where(db.pending_certs.c.hub_id == hub.hub_id))
            conn.execute(
                insert(db.pending_certs).values(hub_id=hub.hub_id, cert_sha256=fingerprint(cert), issued_at=time.time())
            )
            write_audit(conn, hub.actor, "hub.renew", hub.household_id, hub.hub_id)
        return RenewResponse(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            ca_pem=self.ca.cert_pem.decode(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )

    def check_hub(self, hub: HubIdentity, *, engine: Engine | None = None, conn: Connection | None = None) -> None:
        """Refuse a hub that is unknown, revoked, not in the household its certificate names, or that presents a
        certificate other than its current one (a retired one after renewal). The first use of a pending renewed
        certificate makes it current, which retires the old one. ``engine``: another pool than :attr:`engine`
        (the alarm lane's). ``conn``: check in the caller's transaction instead (ingest, which saves a connection
        checkout and a transaction per request); what the check writes is then committed with the caller's work."""
        if conn is not None:
            self._check_hub(conn, hub)
            return
        engine = engine or self.engine
        with engine.connect() as own:
            _single_statements(own)
            current = self._current_cert(own, hub)
            now = time.time()
            if hub.cert_sha256 == current:
                if self.mark_seen(own, hub.hub_id, now, defer=engine is self.urgent_engine):
                    own.commit()
                return
        # A renewed certificate's first use (rare): its promotion is several statements, in one transaction.
        with engine.begin() as tx:
            self._promote_renewed(tx, hub, current, now)

    def _seen_current(self, conn: Connection, hub: HubIdentity) -> bool:
        """:meth:`check_hub` for a hub presenting its current certificate (marked seen on ``conn``, to be committed
        by the caller); False for another certificate, which :meth:`check_hub` promotes or refuses."""
        if hub.cert_sha256 != self._current_cert(conn, hub):
            return False
        self.mark_seen(conn, hub.hub_id, time.time())
        return True

    def _check_hub(self, conn: Connection, hub: HubIdentity) -> None:
        """:meth:`check_hub` in ``conn``'s transaction."""
        current = self._current_cert(conn, hub)
        now = time.time()
        if hub.cert_sha256 != current:
            self._promote_renewed(conn, hub, current, now)
        else:
            self.mark_seen(conn, hub.hub_id, now)

    def _current_cert(self, conn: Connection, hub: HubIdentity) -> str:
        """The fingerprint of the hub's current certificate, once it is known to be enrolled here and not revoked."""
        row = conn.execute(
            select(db.hubs.c.household_id, db.hubs.c.revoked, db.hubs.c.cert_sha256).where(db.hubs.c.id == hub.hub_id)
        ).first()
        if row is None or row.household_id != hub.household_id:
            raise Forbidden("this hub is not enrolled", code="hub_unknown")
        if row.revoked:
            raise Forbidden("this hub's enrollment was revoked", code="hub_revoked")
        return str(row.cert_sha256)

    def mark_seen(self, conn: Connection, hub_id: str, now: float, *, defer: bool = False) -> bool:
        """Health for support: a coarse last-seen, written at most once a minute per hub, in ``conn``'s transaction
        (to be committed by the caller; returns whether it wrote) or, ``defer``, off the caller's path
        (:class:`~cloud_sync.register.lastseen.DeferredLastSeen`: the alarm lane's)."""
        if now - self._hub_seen.get(hub_id, 0.0) <= 60:
            return False
        self._hub_seen[hub_id] = now
        if defer and self.urgent_engine is not self.engine:
            self._deferred_seen.seen(hub_id, now)
            return False
        conn.execute(update(db.hubs).where(db.hubs.c.id == hub_id).values(last_seen=now))
        return True

    def _promote_renewed(self, conn: Connection, hub: HubIdentity, current: str, now: float) -> None:
        """Make the presented certificate current if it is the hub's pending renewal; refuse it otherwise."""
        pending = conn.execute(
            select(db.pending_certs.c.cert_sha256).where(db.pending_certs.c.hub_id == hub.hub_id)
        ).scalar()
        if pending is not None and pending == hub.cert_sha256:
            # Conditional on the certificate we read: of two requests racing to promote, one does it.
            promoted = conn.execute(
                update(db.hubs)
                .where(db.hubs.c.id == hub.hub_id, db.hubs.c.cert_sha256 == current)
                .values(cert_sha256=pending, last_seen=now)
            ).rowcount
            conn.execute(delete(db.pending_certs).where(db.pending_certs.c.hub_id == hub.hub_id))
            if promoted:
                self._hub_seen[hub.hub_id] = now
                write_audit(conn, hub.actor, "hub.cert_retired", hub.household_id, hub.hub_id)
                log.info("hub %s uses its renewed certificate; the old one is retired", hub.hub_id)
            return
        # The other request of such a race finds the promotion already done.
        latest = conn.execute(select(db.hubs.c.cert_sha256).where(db.hubs.c.id == hub.hub_id)).scalar()
        if latest != hub.cert_sha256:
            raise Unauthenticated(
                "this certificate was replaced by a renewal and is no longer valid", code="cert_retired"
            )

    def revoke_hub(self, hub_id: str, *, actor: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(select(db.hubs.c.household_id).where(db.hubs.c.id == hub_id)).first()
            if row is None:
                raise NotFound(f"no hub {hub_id!r}", code="no_hub")
            conn.execute(update(db.hubs).where(db.hubs.c.id == hub_id).values(revoked=True))
            write_audit(conn, actor, "hub.revoke", row.household_id, hub_id)

    def _hubs(self, conn: Connection, household_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(db.hubs.c.id, db.hubs.c.name, db.hubs.c.enrolled_at, db.hubs.c.last_seen, db.hubs.c.revoked).where(
                db.hubs.c.household_id == household_id
            )
        ).mappings()
        return [dict(r) for r in rows]

    def hubs(self, household_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            self.require_household(conn, household_id)
            return self._hubs(conn, household_id)

    # -------------------------------------------------------------------------------------------- commands

    def _queue(
        self, conn: Connection, household_id: str, kind: str, args: dict[str, Any], hub_id: str | None, actor: str
    ) -> list[str]:
        hub_ids: Iterable[str]
        if hub_id is None:
            hub_ids = (
                conn.execute(
                    select(db.hubs.c.id).where(db.hubs.c.household_id == household_id, db.hubs.c.revoked.is_(False))
                )
                .scalars()
                .all()
            )
        else:
            owner = conn.execute(select(db.hubs.c.household_id).where(db.hubs.c.id == hub_id)).scalar()
            if owner != household_id:
                raise NotFound(f"no hub {hub_id!r} in this household", code="no_hub")
            hub_ids = [hub_id]
        size = len(msgspec.json.encode(args))
        if size > MAX_COMMAND_ARGS_BYTES:
            raise Invalid(
                f"command arguments of {size} bytes exceed the limit of {MAX_COMMAND_ARGS_BYTES}", code="too_large"
            )
        ids = []
        now = time.time()
        for h in hub_ids:
            cid = new_id("cmd")
            conn.execute(
                insert(db.commands).values(
                    id=cid,
                    household_id=household_id,
                    hub_id=h,
                    kind=kind,
                    args=args,
                    issued_at=now,
                    issued_by=actor,
                    status="pending",
                )
            )
            ids.append(cid)
        return ids

    def queue_command(
        self, household_id: str, kind: str, args: dict[str, Any], *, hub_id: str | None = None, actor: str
    ) -> list[str]:
        if kind not in COMMAND_KINDS:
            raise Invalid(f"kind must be one of {', '.join(COMMAND_KINDS)}")
        with self.engine.begin() as conn:
            self.require_household(conn, household_id)
            ids = self._queue(conn, household_id, kind, args, hub_id, actor)
            write_audit(conn, actor, f"command.{kind}", household_id, ",".join(ids))
        return ids

    def pending_commands(self, hub: HubIdentity, held: Collection[str] = (), *, check: bool = False) -> list[Command]:
        """Commands without a result yet, oldest first; re-sent until the hub reports one (the hub deduplicates by
        id), except those in ``held``: the hub says it runs them now, so resending them would only end its long-poll
        early. ``check``: the hub is checked first (:meth:`check_hub`), on the same connection.

        A long-poll's read, so it is made cheap: one connection checkout, and on PostgreSQL single statements outside
        a transaction (each write is one statement), with no BEGIN and COMMIT round trips."""
        with self.engine.connect() as conn:
            _single_statements(conn)
            if not check or self._seen_current(conn, hub):
                rows = self._pending_commands(conn, hub, held)
                conn.commit()
                return rows
        # A renewed certificate's first use (rare): promoted, or refused, in a transaction of its own first.
        self.check_hub(hub)
        return self.pending_commands(hub, held)

    def _pending_commands(self, conn: Connection, hub: HubIdentity, held: Collection[str]) -> list[Command]:
        pending = [db.commands.c.hub_id == hub.hub_id, db.commands.c.status == "pending"]
        if held:
            pending.append(db.commands.c.id.not_in(list(held)))
        rows = (
            conn.execute(select(db.commands).where(*pending).order_by(db.commands.c.issued_at).limit(100))
            .mappings()
            .all()
        )
        fresh = [r["id"] for r in rows if r["delivered_at"] is None]
        if fresh:
            conn.execute(update(db.commands).where(db.commands.c.id.in_(fresh)).values(delivered_at=time.time()))
        return [Command(id=r["id"], kind=r["kind"], args=r["args"], issued_at=r["issued_at"]) for r in rows]

    def command_result(self, hub: HubIdentity, command_id: str, result: CommandResult) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(select(db.commands).where(db.commands.c.id == command_id)).mappings().first()
            if row is None or row["hub_id"] != hub.hub_id:
                raise NotFound(f"no command {command_id!r} for this hub", code="no_command")
            if row["kind"] == "member_keys" and row["status"] in ("pending", "superseded"):
                from cloud_sync.register import memberlog

                memberlog.on_hub_result(self, conn, hub, command_id, result)
            if row["status"] == "superseded":
                return  # a newer member list was queued meanwhile; the hub's report still counted above
            if row["status"] != "pending":
                if row["status"] == result.status:
                    return  # a resent result: same effect as the first
                raise Conflict(f"command {command_id!r} already has result {row['status']!r}")
            conn.execute(
                update(db.commands)
                .where(db.commands.c.id == command_id)
                .values(status=result.status, detail=result.detail, completed_at=time.time())
            )
            write_audit(conn, hub.actor, f"command.{row['kind']}.{result.status}", hub.household_id, command_id)
        if row["kind"] == "erase" and result.status == "done":
            from cloud_sync.register.retention import settle_hub_erasure  # retention builds on this module

            settle_hub_erasure(self, hub, result.detail)

    def commands(self, household_id: str, *, limit: int = 100, after: str | None = None) -> list[dict[str, Any]]:
        """The household's commands, oldest first, at most ``limit`` of them after the command ``after``."""
        c = db.commands.c
        with self.engine.connect() as conn:
            self.require_household(conn, household_id)
            q = select(db.commands).where(c.household_id == household_id)
            if after is not None:
                at = conn.execute(select(c.issued_at).where(c.id == after, c.household_id == household_id)).scalar()
                if at is None:
                    raise Invalid(f"after: no command {after!r} in this household", code="bad_cursor")
                q = q.where((c.issued_at > at) | ((c.issued_at == at) & (c.id > after)))
            rows = conn.execute(q.order_by(c.issued_at, c.id).limit(limit)).mappings()
            return [dict(r) for r in rows]

    # ----------------------------------------------------------------------------------------------- audit

    def audit_entries(self, household_id: str | None = None, *, limit: int = 1000) -> list[dict[str, Any]]:
        q = select(db.audit).order_by(db.audit.c.id.desc()).limit(limit)
        if household_id is not None:
            q = q.where(db.audit.c.household_id == household_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def audit(self, actor: str, action: str, household_id: str | None, target: str = "", **detail: object) -> None:
        with self.engine.begin() as conn:
            write_audit(conn, actor, action, household_id, target, **detail)


def _single_statements(conn: Connection) -> None:
    """On PostgreSQL, statements on ``conn`` run outside a transaction: no BEGIN and COMMIT round trips around a
    hub's check or a long-poll's read, each of which a hub request waits for behind bulk ingest on a busy server.
    Only for work whose every write is one statement. SQLite keeps its transaction (its write lock needs it)."""
    if conn.dialect.name != "sqlite":
        conn.execution_options(isolation_level="AUTOCOMMIT")
