"""Alarms: opened from what hubs deliver, planned into notification jobs, acknowledged, listed.

Everything here runs inside the caller's transaction (ingest's, the ack's), so an alarm and its jobs are stored
with the event that raised them or not at all. Ids are deterministic and inserts ignore conflicts: a batch that
arrives twice, or the same alarm planned by two register processes, yields each job once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, Select, and_, insert, select, update

from cloud_sync.register import db
from cloud_sync.register.auth import new_id
from cloud_sync.register.errors import Conflict, NotFound
from cloud_sync.register.notify import schema
from cloud_sync.register.notify.policy import DEFAULT_POLICY, MIN_HUB_SILENT_S, Policy, decode_policy
from cloud_sync.register.registry import write_audit

log = logging.getLogger(__name__)

LATE_AFTER_S: Final = 30.0
"""An alarm the register receives this long after the hub raised it is marked late in every message."""

DETECTOR_HEALTH: Final[dict[str, str]] = {
    "fault": "detector_fault",
    "tamper": "tamper",
    "test": "test",
    "battery_low": "battery_low",
    "end_of_life": "end_of_life",
}
"""Smoke-detector states (alarm lane) that are health alerts rather than smoke, and the alarm category of each."""

_wakeups: dict[int, threading.Condition] = {}
_wakeups_lock = threading.Lock()


def wakeup(engine_key: object) -> threading.Condition:
    """The condition this process's dispatchers wait on; notified when jobs are planned or cancelled."""
    with _wakeups_lock:
        return _wakeups.setdefault(id(engine_key), threading.Condition())


def notify_dispatchers(engine_key: object) -> None:
    cond = wakeup(engine_key)
    with cond:
        cond.notify_all()


# ------------------------------------------------------------------------------------------------- policy


def load_policy(conn: Connection, household_id: str) -> Policy:
    raw = conn.execute(
        select(schema.escalation_policies.c.policy).where(schema.escalation_policies.c.household_id == household_id)
    ).scalar_one_or_none()
    return stored_policy(raw)


def stored_policy(raw: Any) -> Policy:
    """The policy stored as ``raw`` (``None``: the household has none)."""
    if raw is None:
        return DEFAULT_POLICY
    try:
        return decode_policy(raw)
    except (msgspec.ValidationError, ValueError):
        # A stored policy that no longer validates must not silence a smoke alarm: fall back to the defaults.
        log.error("a stored escalation policy is invalid; using the defaults")
        return DEFAULT_POLICY


def recipients(conn: Connection, household_id: str) -> list[dict[str, Any]]:
    """The household's members with their contact details, in call order."""
    return [recipient(r) for r in conn.execute(recipients_select(household_id)).mappings()]


def recipients_select(household_id: Any) -> Select[Any]:
    """The query behind :func:`recipients` (``household_id`` a value or a bind parameter); rows go through
    :func:`recipient`."""
    c, m = schema.contacts, db.members
    return (
        select(
            m.c.id,
            m.c.name,
            m.c.phone,
            m.c.email,
            c.c.phone.label("c_phone"),
            c.c.email.label("c_email"),
            c.c.language,
            c.c.call_order,
        )
        .select_from(m.outerjoin(c, c.c.member_id == m.c.id))
        .where(m.c.household_id == household_id)
        .order_by(c.c.call_order, m.c.created_at)
    )


def recipient(r: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "member_id": r["id"],
        "name": r["name"],
        # The contact record wins; members added before contacts existed keep their member details.
        "phone": r["c_phone"] if r["c_phone"] is not None else r["phone"],
        "email": r["c_email"] if r["c_email"] is not None else r["email"],
        "language": r["language"] or "fi",
    }


# ------------------------------------------------------------------------------------------ opening alarms


def _place(conn: Connection, household_id: str, device_id: str) -> str:
    row = conn.execute(
        select(db.devices.c.room, db.devices.c.name).where(
            db.devices.c.household_id == household_id, db.devices.c.device_id == device_id
        )
    ).first()
    if row is None:
        return ""
    return str(row.room or row.name or "")


def _device_kind(conn: Connection, household_id: str, device_id: str) -> str:
    kind = conn.execute(
        select(db.devices.c.kind).where(db.devices.c.household_id == household_id, db.devices.c.device_id == device_id)
    ).scalar_one_or_none()
    return str(kind or "other")


def on_events(conn: Connection, hub_id: str, household_id: str, lane: str, rows: Sequence[dict[str, Any]]) -> int:
    """Opens the alarms that ``rows`` (just stored event rows of the alarm or events lane) raise; returns how many
    rows raised or closed something (the caller wakes the dispatchers if any)."""
    touched = 0
    policy: Policy | None = None
    for r in rows:
        if (r.get("attrs") or {}).get("selftest"):
            continue  # `kotihub selftest --alarm-test` checks the path to the register; it pages nobody
        kind, state, dev, ts = r["kind"], r["state"], r["device_id"], float(r["ts"])
        now = float(r["received_at"])
        alarm_id = f"{hub_id}.{lane}.{r['seq']}"
        if kind == "smoke":
            if state == "smoke":
                policy = policy or load_policy(conn, household_id)
                touched += open_alarm(conn, policy, alarm_id, household_id, hub_id, dev, "smoke", ts, now)
            elif state == "clear":
                conn.execute(
                    update(schema.alarms)
                    .where(
                        schema.alarms.c.household_id == household_id,
                        schema.alarms.c.device_id == dev,
                        schema.alarms.c.cleared_at.is_(None),
                    )
                    .values(cleared_at=ts)
                )
            elif state in DETECTOR_HEALTH:
                policy = policy or load_policy(conn, household_id)
                cat = DETECTOR_HEALTH[state]
                touched += open_alarm(conn, policy, alarm_id, household_id, hub_id, dev, cat, ts, now)
        elif kind == "availability":
            if state == "offline":
                policy = policy or load_policy(conn, household_id)
                delay = policy.offline_debounce(_device_kind(conn, household_id, dev))
                touched += open_alarm(
                    conn, policy, alarm_id, household_id, hub_id, dev, "device_offline", ts, now, delay=delay
                )
            elif state == "online":
                # The debounce: back before anyone was told, so nobody is.
                touched += _cancel_where(
                    conn,
                    and_(
                        schema.alarms.c.household_id == household_id,
                        schema.alarms.c.device_id == dev,
                        schema.alarms.c.category == "device_offline",
                        schema.alarms.c.cleared_at.is_(None),
                    ),
                    cleared_at=ts,
                )
    return touched


def on_storage_low(conn: Connection, hub_id: str, household_id: str, rows: Sequence[dict[str, Any]]) -> int:
    """``storage_low`` diagnostics items (the hub reports once per episode) -> ``storage_full`` health alerts."""
    policy = load_policy(conn, household_id)
    opened = 0
    for r in rows:
        alarm_id = f"{hub_id}.diagnostics.{r['seq']}"
        opened += open_alarm(
            conn,
            policy,
            alarm_id,
            household_id,
            hub_id,
            hub_id,
            "storage_full",
            float(r["ts"]),
            float(r["received_at"]),
        )
    return opened


BATTERY_ALERT_MAX: Final = 50.0
"""No policy's battery threshold is above this: readings above it are not even looked at (the ingest hot path)."""
BATTERY_EPISODE_S: Final = 7 * 86_400


def on_battery(conn: Connection, hub_id: str, household_id: str, rows: Sequence[dict[str, Any]]) -> int:
    """Battery readings below the household's threshold -> ``battery_low``, once per device per week (UTC weeks
    since the epoch: the alarm id carries the week, so a hub resending or two processes open it once)."""
    policy = load_policy(conn, household_id)
    opened = 0
    seen: set[str] = set()
    for r in rows:
        dev = r["device_id"]
        if dev in seen or r["value"] >= policy.battery_low_percent:
            continue
        seen.add(dev)
        tag = hashlib.blake2b(dev.encode(), digest_size=8).hexdigest()
        alarm_id = f"{hub_id}.battery.{tag}.{int(float(r['ts']) // BATTERY_EPISODE_S)}"
        raised, now = float(r["ts"]), float(r["received_at"])
        opened += open_alarm(conn, policy, alarm_id, household_id, hub_id, dev, "battery_low", raised, now)
    return opened


def _cancel_where(conn: Connection, where: Any, *, cleared_at: float) -> int:
    ids = conn.execute(select(schema.alarms.c.id).where(where)).scalars().all()
    if not ids:
        return 0
    conn.execute(update(schema.alarms).where(schema.alarms.c.id.in_(ids)).values(cleared_at=cleared_at))
    conn.execute(
        update(schema.notify_jobs)
        .where(schema.notify_jobs.c.alarm_id.in_(ids), schema.notify_jobs.c.state == "pending")
        .values(state="cancelled")
    )
    return len(ids)


def open_alarm(
    conn: Connection,
    policy: Policy,
    alarm_id: str,
    household_id: str,
    hub_id: str,
    device_id: str,
    category: str,
    raised_at: float,
    now: float,
    *,
    delay: float = 0.0,
) -> int:
    """Stores the alarm and plans its jobs; 0 if the household restricted the category (nothing is kept or sent)
    or the alarm already exists."""
    if category in policy.restricted:
        return 0
    urgent = category == "smoke"
    inserted = conn.execute(
        db.insert_ignore(conn.engine, schema.alarms)
        .execution_options(preserve_rowcount=True)
        .values(
            id=alarm_id,
            household_id=household_id,
            hub_id=hub_id,
            device_id=device_id,
            category=category,
            urgent=urgent,
            place=_place(conn, household_id, device_id),
            raised_at=raised_at,
            received_at=now,
            late=now - raised_at > LATE_AFTER_S,
        )
    ).rowcount
    if inserted != 1:
        return 0
    jobs = plan(policy, alarm_id, household_id, category, recipients(conn, household_id), now, delay=delay)
    if jobs:
        conn.execute(db.insert_ignore(conn.engine, schema.notify_jobs), jobs)
    if urgent:
        log.warning("smoke alarm opened; %d notification steps planned", len(jobs))
    return 1


def plan(
    policy: Policy,
    alarm_id: str,
    household_id: str,
    category: str,
    people: Iterable[dict[str, Any]],
    now: float,
    *,
    delay: float = 0.0,
) -> list[dict[str, Any]]:
    """The jobs of an alarm: pure, so the escalation can be tested without a database."""
    people = list(people)
    jobs: list[dict[str, Any]] = []

    def job(step: int, channel: str, member_id: str, due: float) -> None:
        jobs.append(
            {
                "id": f"{alarm_id}.{step}.{member_id or '-'}.{channel}",
                "household_id": household_id,
                "alarm_id": alarm_id,
                "step": step,
                "channel": channel,
                "member_id": member_id,
                "due_at": due,
                "state": "pending",
                "attempts": 0,
                "late": False,
                "resends": 0,
            }
        )

    def reachable(person: dict[str, Any], channel: str) -> bool:
        return bool(person["email"] if channel == "email" else person["phone"])

    if category == "smoke":
        for index, step in enumerate(policy.smoke):
            for rnd in range(step.repeat + 1):
                base = now + step.after_s + rnd * step.repeat_every_s
                for channel in step.channels:
                    targets = [p for p in people if reachable(p, channel)]
                    for position, person in enumerate(targets):
                        due = base + (position * step.gap_s if step.in_order else 0)
                        job(index * 100 + rnd, channel, person["member_id"], due)
        job(9999, "desk", "", now + policy.desk_after_s)
    else:
        due = policy.after_quiet_hours(now + delay)
        for channel in policy.health:
            for person in people:
                if reachable(person, channel):
                    job(0, channel, person["member_id"], due)
    return jobs


# ------------------------------------------------------------------------------------------ hub silence


def check_silent_hubs(conn: Connection, now: float) -> int:
    """Opens a ``hub_silent`` alarm, once per silence, for each hub not heard from for its household's limit.

    One statement, whatever the fleet: only hubs silent for longer than any policy may allow are read, each with its
    household's policy. Every register process runs this each minute; reading every hub and then each one's policy
    was 2,000 statements a minute per process for 2,000 homes, and 8 % of a worker's Python time with a steady fleet
    (docs/scale.md)."""
    opened = 0
    h, pol = db.hubs.c, schema.escalation_policies.c
    rows = conn.execute(
        select(h.id, h.household_id, h.last_seen, pol.policy)
        .select_from(db.hubs.outerjoin(schema.escalation_policies, pol.household_id == h.household_id))
        .where(h.revoked.is_(False), h.last_seen.is_not(None), h.last_seen <= now - MIN_HUB_SILENT_S)
    ).all()
    for hub_id, household_id, last_seen, raw in rows:
        policy = stored_policy(raw)
        if now - float(last_seen) < policy.hub_silent_after_s:
            continue
        alarm_id = f"{hub_id}.silent.{int(last_seen)}"
        opened += open_alarm(conn, policy, alarm_id, household_id, hub_id, hub_id, "hub_silent", float(last_seen), now)
    return opened


# ------------------------------------------------------------------------------------------ acknowledgement


def acknowledge(conn: Connection, household_id: str, alarm_id: str, *, actor: str, channel: str) -> dict[str, Any]:
    """Marks the alarm acknowledged and cancels every step not yet sent, in one statement each; an alarm already
    acknowledged keeps its first acknowledgement (the reply says who). Queues ``alarm_ack`` to the household's
    hubs so that their sirens go quiet."""
    now = time.time()
    row = (
        conn.execute(
            select(schema.alarms).where(schema.alarms.c.id == alarm_id, schema.alarms.c.household_id == household_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no alarm {alarm_id!r} in this household", code="no_alarm")
    if row["acked_at"] is not None:
        return {"alarm_id": alarm_id, "acked_at": row["acked_at"], "acked_by": row["acked_by"], "already": True}
    won = conn.execute(
        update(schema.alarms)
        .where(schema.alarms.c.id == alarm_id, schema.alarms.c.acked_at.is_(None))
        .values(acked_at=now, acked_by=actor, ack_channel=channel)
    ).rowcount
    if won != 1:
        raise Conflict("the alarm was acknowledged meanwhile; read it again", code="already_acked")
    cancelled = conn.execute(
        update(schema.notify_jobs)
        .where(schema.notify_jobs.c.alarm_id == alarm_id, schema.notify_jobs.c.state == "pending")
        .values(state="cancelled")
    ).rowcount
    write_audit(conn, actor, "alarm.ack", household_id, alarm_id, channel=channel, cancelled=cancelled)
    # Every hub of the household: its sirens may be sounding for this alarm too (each hub sounds its own).
    hubs = (
        conn.execute(select(db.hubs.c.id).where(db.hubs.c.household_id == household_id, db.hubs.c.revoked.is_(False)))
        .scalars()
        .all()
    )
    for hub_id in hubs:
        conn.execute(
            insert(db.commands).values(
                id=new_id("cmd"),
                household_id=household_id,
                hub_id=hub_id,
                kind="alarm_ack",
                args={"device_id": row["device_id"]},
                issued_at=now,
                issued_by=actor,
                status="pending",
            )
        )
    return {"alarm_id": alarm_id, "acked_at": now, "acked_by": actor, "already": False, "cancelled": cancelled}


def history(conn: Connection, household_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The household's alarms, newest first, each with who was told, when, how, and the provider's status."""
    a = (
        conn.execute(
            select(schema.alarms)
            .where(schema.alarms.c.household_id == household_id)
            .order_by(schema.alarms.c.received_at.desc())
            .limit(limit)
        )
        .mappings()
        .all()
    )
    out = []
    for alarm in a:
        jobs = (
            conn.execute(
                select(
                    schema.notify_jobs.c.step,
                    schema.notify_jobs.c.channel,
                    schema.notify_jobs.c.member_id,
                    schema.notify_jobs.c.due_at,
                    schema.notify_jobs.c.state,
                    schema.notify_jobs.c.sent_at,
                    schema.notify_jobs.c.provider_status,
                    schema.notify_jobs.c.late,
                    schema.notify_jobs.c.resends,
                )
                .where(schema.notify_jobs.c.alarm_id == alarm["id"])
                .order_by(schema.notify_jobs.c.due_at, schema.notify_jobs.c.id)
            )
            .mappings()
            .all()
        )
        out.append({**dict(alarm), "notifications": [dict(j) for j in jobs]})
    return out
