"""The notification tables, on the register's metadata (created with the rest of the schema).

Ids of alarms and jobs are deterministic (the alarm's hub, lane and seq; the job's alarm, step, member and
channel), and rows are inserted with ``ON CONFLICT DO NOTHING``: a batch delivered twice or two register
processes planning the same alarm create each job once. That is the first half of exactly-once; the job states
(``pending`` -> ``sending`` [intent recorded] -> ``sent``) are the second.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Double, ForeignKey, Index, Integer, String, Table, Text

from cloud_sync.register import db
from cloud_sync.register.db import metadata

contacts = Table(
    "contacts",
    metadata,
    # Keyed by member: removing the member (or erasing the household) removes the contact with it.
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
    metadata,
    Column("household_id", String(64), ForeignKey("households.id"), primary_key=True),
    Column("policy", JSON, nullable=False),
    Column("updated_at", Double, nullable=False),
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", String(160), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("hub_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    # "smoke" or a health category (see policy.HEALTH_CATEGORIES).
    Column("category", String(32), nullable=False),
    Column("urgent", Boolean, nullable=False),
    # What and where, for the message text: the device's room (or name), never more.
    Column("place", String(256), nullable=False, default=""),
    Column("raised_at", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    # The hub delivered it long after it was raised (uplink down): the messages say so.
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
    metadata,
    Column("id", String(220), primary_key=True),
    Column("household_id", String(64), nullable=False, index=True),
    Column("alarm_id", String(160), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    # sms, voice, email or desk.
    Column("channel", String(8), nullable=False),
    Column("member_id", String(64), nullable=False, default=""),
    Column("due_at", Double, nullable=False),
    # pending -> sending -> sent | failed | cancelled | skipped
    Column("state", String(12), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
    # Set when a worker first decided to send: a job found in "sending" with intent_at set may have reached the
    # provider, so the provider is asked before anything is sent again.
    Column("intent_at", Double, nullable=True),
    Column("provider_ref", String(255), nullable=True),
    Column("provider_status", String(24), nullable=True),
    Column("sent_at", Double, nullable=True),
    Column("late", Boolean, nullable=False, default=False),
    # Sends after a crash that the provider could not confirm or deny (SMTP): at most one per crash.
    Column("resends", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Index("notify_jobs_due", "state", "due_at"),
)

# Contacts, policy, alarms and who was told are the household's personal data: erased with it, and expired by age
# (the alarms by when raised or received, the jobs by when due); contacts reference members, so they come first.
db.join_household_tables(
    {
        notify_jobs: ("due_at",),
        alarms: ("received_at", "raised_at"),
        contacts: (),
        escalation_policies: (),
    }
)
