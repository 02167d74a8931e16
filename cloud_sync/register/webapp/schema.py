"""The app's sign-in tables, on the register's metadata (created with the rest of the schema).

Nothing here is a secret the database could leak: sessions and one-time links are stored as SHA-256 hashes of
256-bit random tokens, passkeys as their public keys. Sessions, passkeys and links belong to a member and go with
the household on erasure; ceremonies (a challenge waiting for the browser's answer) last minutes.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Double, ForeignKey, Index, LargeBinary, String, Table

from cloud_sync.register import db
from cloud_sync.register.db import metadata

passkeys = Table(
    "app_passkeys",
    metadata,
    Column("credential_id", String(512), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("public_key", LargeBinary, nullable=False),
    # The authenticator's signature counter: a value that does not grow means a cloned key (refused).
    Column("sign_count", BigInteger, nullable=False, default=0),
    Column("transports", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=True),
)

sessions = Table(
    "app_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
)

signin_links = Table(
    "app_signin_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
)

ceremonies = Table(
    "app_ceremonies",
    metadata,
    Column("id", String(64), primary_key=True),
    # "register" (a member enrolling a passkey) or "authenticate" (anyone signing in).
    Column("kind", String(16), nullable=False),
    Column("challenge", LargeBinary, nullable=False),
    Column("member_id", String(64), nullable=True),
    Column("expires_at", Double, nullable=False),
    Index("app_ceremonies_expiry", "expires_at"),
)

db.join_household_tables({sessions: (), passkeys: (), signin_links: ()})

# Home reads each device's latest value per quantity from readings_sensor_ts (db.py), and each device's newest
# availability report from this one.
Index("events_device_kind_ts", db.events.c.household_id, db.events.c.device_id, db.events.c.kind, db.events.c.ts)
