"""The register's schema as the release before migrations made it (commit 15f63d6), frozen.

The baseline revision creates exactly this, and a database that release made is adopted only if it matches this
(:func:`cloud_sync.register.migrate.adopt`). Never edit it to follow ``db.py``: a change to the schema is a new
revision under ``versions/``. Comments about the columns live in ``db.py`` and ``notify/schema.py``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

BASELINE = MetaData()

households = Table(
    "households",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("erased_before", Double, nullable=False, default=0.0, server_default="0"),
)

members = Table(
    "members",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("email", String(254), nullable=False, default=""),
    Column("phone", String(32), nullable=False, default=""),
    Column("created_at", Double, nullable=False),
)

member_keys = Table(
    "member_keys",
    BASELINE,
    Column("member_id", String(64), ForeignKey("members.id"), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("recipient", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
)

consents = Table(
    "consents",
    BASELINE,
    Column("household_id", String(64), ForeignKey("households.id"), primary_key=True),
    Column("marketing", Boolean, nullable=False, default=False),
    Column("marketing_ban", Boolean, nullable=False, default=False),
    Column("updated_at", Double, nullable=False),
)

hubs = Table(
    "hubs",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False, default=""),
    Column("cert_sha256", String(64), nullable=False),
    Column("enrolled_at", Double, nullable=False),
    Column("last_seen", Double, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)

pending_certs = Table(
    "pending_certs",
    BASELINE,
    Column("hub_id", String(64), primary_key=True),
    Column("cert_sha256", String(64), nullable=False),
    Column("issued_at", Double, nullable=False),
)

enroll_tokens = Table(
    "enroll_tokens",
    BASELINE,
    Column("token_hash", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
    Column("hub_id", String(64), nullable=True),
)

devices = Table(
    "devices",
    BASELINE,
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(256), nullable=False, default=""),
    Column("model", String(256), nullable=False, default=""),
    Column("room", String(256), nullable=False, default=""),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("household_id", "device_id"),
)

readings = Table(
    "readings",
    BASELINE,
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("value", Double, nullable=False),
    Column("ts", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq", name="readings_pk"),
    Index("readings_household_ts", "household_id", "ts"),
    Index("readings_received", "received_at"),
)

events = Table(
    "events",
    BASELINE,
    Column("hub_id", String(64), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("attrs", JSON, nullable=False),
    Column("ts", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "lane", "seq", name="events_pk"),
    Index("events_household_ts", "household_id", "ts"),
    Index("events_received", "received_at"),
)

clip_records = Table(
    "clip_records",
    BASELINE,
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("clip_id", String(128), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("started", Double, nullable=False),
    Column("duration_s", Double, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq", name="clip_records_pk"),
    Index("clip_records_household", "household_id", "started"),
    Index("clip_records_received", "received_at"),
)

clips = Table(
    "clips",
    BASELINE,
    Column("household_id", String(64), nullable=False),
    Column("clip_id", String(128), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("started", Double, nullable=False),
    Column("duration_s", Double, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("complete", Boolean, nullable=False, default=False),
    Column("created_at", Double, nullable=False),
    Column("completed_at", Double, nullable=True),
    PrimaryKeyConstraint("household_id", "clip_id"),
    Index("clips_created", "created_at"),
)

diagnostics = Table(
    "diagnostics",
    BASELINE,
    Column("hub_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("ts", Double, nullable=False),
    Column("body", JSON, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq", name="diagnostics_pk"),
    Index("diagnostics_received", "received_at"),
)

commands = Table(
    "commands",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("hub_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("args", JSON, nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("issued_by", String(128), nullable=False),
    Column("delivered_at", Double, nullable=True),
    Column("status", String(16), nullable=False, default="pending"),
    Column("detail", JSON, nullable=True),
    Column("completed_at", Double, nullable=True),
    Index("commands_pending", "hub_id", "status"),
)

api_tokens = Table(
    "api_tokens",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("household_id", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

audit = Table(
    "audit",
    BASELINE,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("household_id", String(64), nullable=True, index=True),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)

member_log = Table(
    "member_log",
    BASELINE,
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("prev", String(64), nullable=False),
    Column("signed", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("household_id", "version", name="member_log_pk"),
)

hub_member_versions = Table(
    "hub_member_versions",
    BASELINE,
    Column("hub_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

member_requests = Table(
    "member_requests",
    BASELINE,
    Column("id", String(64), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("member_id", String(64), nullable=False),
    Column("recipient", String(128), nullable=False),
    Column("ed25519", String(64), nullable=False),
    Column("note", String(256), nullable=False, default=""),
    Column("requested_by", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
)

erasure_receipts = Table(
    "erasure_receipts",
    BASELINE,
    Column("household_id", String(64), nullable=False),
    Column("receipt_id", String(64), nullable=False),
    Column("at", Double, nullable=False, index=True),
    Column("body", JSON, nullable=False),
    PrimaryKeyConstraint("household_id", "receipt_id"),
)

hub_health = Table(
    "hub_health",
    BASELINE,
    Column("hub_id", String(64), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("received_at", Double, nullable=False),
    Column("version", String(64), nullable=False),
    Column("uptime_s", Double, nullable=False),
    Column("disk_free_bytes", BigInteger, nullable=False),
    Column("disk_total_bytes", BigInteger, nullable=False),
    Column("store_bytes", BigInteger, nullable=False),
    Column("written_bytes_per_day", BigInteger, nullable=True),
    Column("drivers_down", Integer, nullable=False),
    *(
        Column(f"lag_{lane}", BigInteger, nullable=False, default=0)
        for lane in ("alarm", "events", "readings", "clips", "diagnostics")
    ),
    Column("body", JSON, nullable=False),
)


contacts = Table(
    "contacts",
    BASELINE,
    Column("member_id", String(64), ForeignKey("members.id", ondelete="CASCADE"), primary_key=True),
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False, index=True),
    Column("phone", String(32), nullable=False, default=""),
    Column("email", String(254), nullable=False, default=""),
    Column("language", String(2), nullable=False, default="fi"),
    Column("call_order", Integer, nullable=False, default=0),
    Column("updated_at", Double, nullable=False),
)

escalation_policies = Table(
    "escalation_policies",
    BASELINE,
    Column("household_id", String(64), ForeignKey("households.id"), primary_key=True),
    Column("policy", JSON, nullable=False),
    Column("updated_at", Double, nullable=False),
)

alarms = Table(
    "alarms",
    BASELINE,
    Column("id", String(160), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("hub_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("category", String(32), nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("place", String(256), nullable=False, default=""),
    Column("raised_at", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    Column("late", Boolean, nullable=False, default=False),
    Column("acked_at", Double, nullable=True),
    Column("acked_by", String(128), nullable=True),
    Column("ack_channel", String(16), nullable=True),
    Column("cleared_at", Double, nullable=True),
    Index("alarms_open", "acked_at", "raised_at"),
    Index("alarms_received", "received_at"),
)

notify_jobs = Table(
    "notify_jobs",
    BASELINE,
    Column("id", String(220), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("alarm_id", String(160), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("channel", String(8), nullable=False),
    Column("member_id", String(64), nullable=False, default=""),
    Column("due_at", Double, nullable=False),
    Column("state", String(12), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
    Column("intent_at", Double, nullable=True),
    Column("provider_ref", String(255), nullable=True),
    Column("provider_status", String(24), nullable=True),
    Column("sent_at", Double, nullable=True),
    Column("late", Boolean, nullable=False, default=False),
    Column("resends", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Index("notify_jobs_due", "state", "due_at"),
)
