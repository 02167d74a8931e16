"""The alarm lane's transaction on PostgreSQL in two round trips (docs/scale.md "Runs J").

The Python path (:func:`.ingest._admit`, :func:`.ingest._ingest_postgres`, :func:`.notify.alarms.on_events`) waits
for each of an alarm's statements in turn: BEGIN, the admission, the event, the policy, the device's place, the
alarm, its recipients, its jobs, COMMIT. Under load each of those waits for a PostgreSQL backend to be scheduled
behind bulk ``COPY`` backends, which is where the alarm's p99 went. Here the same transaction is two psycopg
pipelines, one round trip each:

1. BEGIN; the admission (hub and erasure watermark, ``FOR SHARE``, as in ingest); the events' insert, gated in SQL
   on the same admission and watermark so that a refused hub writes nothing even before the rollback; and every
   read the planning needs (the policy, the recipients, the batch's devices).
2. The alarms each with its jobs (one statement: the jobs are inserted only if the alarm was), the clears and
   cancellations, COMMIT.

What is decided in between is the Python path's own logic on the same data: the branches of ``on_events`` and
:func:`.notify.alarms.plan`. ``tests/integration/test_register_alarm_txn.py`` checks that both paths store the same
rows, alarms and jobs. Anything out of the ordinary is left to the Python path (the caller): a hub the admission
does not admit (refused, or a renewed certificate's first use) gets ``None`` back after a rollback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.notify import alarms
from cloud_sync.register.notify.policy import Policy

log = logging.getLogger(__name__)

# Gated like the admission: a hub that is refused stores nothing, not even for the moment before the rollback.
# The watermark is _since's rule: none (NULL or 0) keeps everything, else items at or after it.
_INSERT_EVENTS: Final = (
    "INSERT INTO events (hub_id, lane, seq, household_id, device_id, kind, state, attrs, ts, received_at)"
    " SELECT hub_id, lane, seq, household_id, device_id, kind, state, attrs, ts, received_at"
    " FROM json_populate_recordset(NULL::events, %(rows)s::json) b"
    " WHERE EXISTS (SELECT 1 FROM hubs h WHERE h.id = %(hub)s AND h.household_id = %(household)s"
    " AND NOT h.revoked AND h.cert_sha256 = %(cert)s)"
    " AND NOT EXISTS (SELECT 1 FROM households hh WHERE hh.id = %(household)s AND hh.erased_before <> 0"
    " AND b.ts < hh.erased_before)"
    " ON CONFLICT DO NOTHING"
)
_POLICY: Final = "SELECT policy FROM escalation_policies WHERE household_id = %(household)s"
_DEVICES: Final = (
    "SELECT device_id, room, name, kind FROM devices WHERE household_id = %(household)s AND device_id = ANY(%(devs)s)"
)
_RECIPIENTS: Final = str(alarms.recipients_select(bindparam("household")).compile(dialect=pg_dialect.dialect()))  # type: ignore[no-untyped-call]
# The alarm and, only if it was inserted now, its jobs (the keys of alarms.plan's jobs; the other columns stay NULL
# until a dispatcher claims the job): one statement, as open_alarm's two.
_OPEN: Final = (
    "WITH a AS (INSERT INTO alarms (id, household_id, hub_id, device_id, category, urgent, place, raised_at,"
    " received_at, late) VALUES (%(id)s, %(household)s, %(hub)s, %(dev)s, %(category)s, %(urgent)s, %(place)s,"
    " %(raised)s, %(now)s, %(late)s) ON CONFLICT DO NOTHING RETURNING id),"
    " j AS (INSERT INTO notify_jobs (id, household_id, alarm_id, step, channel, member_id, due_at, state, attempts,"
    " late, resends) SELECT id, household_id, alarm_id, step, channel, member_id, due_at, state, attempts, late,"
    " resends"
    " FROM json_populate_recordset(NULL::notify_jobs, %(jobs)s::json) WHERE EXISTS (SELECT 1 FROM a)"
    " ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM j)"
)
_CLEAR: Final = (
    "UPDATE alarms SET cleared_at = %(ts)s"
    " WHERE household_id = %(household)s AND device_id = %(dev)s AND cleared_at IS NULL"
)
_CANCEL: Final = (
    "WITH c AS (UPDATE alarms SET cleared_at = %(ts)s WHERE household_id = %(household)s AND device_id = %(dev)s"
    " AND category = 'device_offline' AND cleared_at IS NULL RETURNING id),"
    " j AS (UPDATE notify_jobs SET state = 'cancelled' WHERE alarm_id IN (SELECT id FROM c) AND state = 'pending')"
    " SELECT count(*) FROM c"
)


@dataclass(frozen=True)
class Stored:
    erased: int
    stored: int
    raised: int


@dataclass(frozen=True)
class _Step:
    sql: str
    params: dict[str, Any]
    smoke_jobs: int = -1
    """For a smoke alarm's opening, how many jobs it plans (logged once it is stored); -1 otherwise."""


def store(
    dbapi: psycopg.Connection[Any], admit_sql: str, hub: HubIdentity, rows: Sequence[dict[str, Any]]
) -> Stored | None:
    """Stores an alarm batch's event ``rows`` (non-empty, the hub's own) and opens what they raise, committed;
    ``None`` (nothing written, the connection idle) when ``admit_sql`` does not admit the hub."""
    hub_id, household = hub.hub_id, hub.household_id
    relevant = [
        r for r in rows if r["kind"] in ("smoke", "availability") and not (r.get("attrs") or {}).get("selftest")
    ]
    base = {"hub": hub_id, "household": household, "cert": hub.cert_sha256}
    with _own_transaction(dbapi):
        with dbapi.pipeline():
            dbapi.execute("BEGIN")
            admitted = dbapi.execute(admit_sql, (hub_id,))
            inserted = dbapi.execute(_INSERT_EVENTS, {**base, "rows": msgspec.json.encode(rows).decode()})
            if relevant:
                policy = dbapi.execute(_POLICY, base)
                people = dbapi.execute(_RECIPIENTS, base)
                devices = dbapi.execute(_DEVICES, {**base, "devs": sorted({r["device_id"] for r in relevant})})
        row = admitted.fetchone()
        if row is None or row[0] != household or row[1] or row[2] != hub.cert_sha256:
            dbapi.execute("ROLLBACK")
            return None
        cutoff = float(row[3] or 0.0)
        stored = inserted.rowcount
        kept = [r for r in relevant if not cutoff or r["ts"] >= cutoff]
        erased = sum(1 for r in rows if cutoff and r["ts"] < cutoff)
        steps: list[_Step] = []
        if kept:
            names = [d.name for d in people.description or ()]
            recipients = [alarms.recipient(dict(zip(names, p, strict=True))) for p in people.fetchall()]
            raw = policy.fetchone()
            places = {d[0]: d[1:] for d in devices.fetchall()}
            steps = _plan(hub_id, household, kept, raw[0] if raw else None, recipients, places)
        with dbapi.pipeline():
            done = [(step, dbapi.execute(step.sql, step.params)) for step in steps]
            dbapi.execute("COMMIT")
    raised = 0
    for step, cursor in done:
        if step.sql is _CLEAR:
            continue
        result = cursor.fetchone()
        n = int(result[0]) if result else 0
        raised += n
        if n and step.smoke_jobs >= 0:
            log.warning("smoke alarm opened; %d notification steps planned", step.smoke_jobs)
    return Stored(erased=erased, stored=stored, raised=raised)


@contextlib.contextmanager
def _own_transaction(dbapi: psycopg.Connection[Any]) -> Iterator[None]:
    """BEGIN and COMMIT are sent by this module inside its pipelines (psycopg's own BEGIN would be a round trip
    of its own); whatever is left open when it leaves is rolled back, and the connection handed back as it was."""
    dbapi.autocommit = True
    try:
        yield
    finally:
        try:
            if dbapi.info.transaction_status != TransactionStatus.IDLE:
                dbapi.execute("ROLLBACK")
            dbapi.autocommit = False
        except psycopg.Error:
            # A connection that cannot even roll back is closed, so that the pool discards it (never handed out
            # again in autocommit). The error being raised, if any, is the one the caller sees.
            dbapi.close()


def _plan(
    hub_id: str,
    household: str,
    rows: Sequence[dict[str, Any]],
    raw_policy: Any,
    recipients: list[dict[str, Any]],
    devices: dict[str, tuple[str, str, str]],
) -> list[_Step]:
    """The statements :func:`.notify.alarms.on_events` would run for ``rows``, in order (the same branches)."""
    policy: Policy | None = None
    steps: list[_Step] = []
    for r in rows:
        kind, state, dev, ts = r["kind"], r["state"], r["device_id"], float(r["ts"])
        now = float(r["received_at"])
        alarm_id = f"{hub_id}.{r['lane']}.{r['seq']}"
        where = {"household": household, "dev": dev, "ts": ts}
        category, delay = "", 0.0
        if kind == "smoke":
            if state == "smoke":
                category = "smoke"
            elif state == "clear":
                steps.append(_Step(_CLEAR, where))
            elif state in alarms.DETECTOR_HEALTH:
                category = alarms.DETECTOR_HEALTH[state]
        elif kind == "availability":
            if state == "offline":
                category = "device_offline"
                policy = policy or alarms.stored_policy(raw_policy)
                delay = policy.offline_debounce(str(devices.get(dev, ("", "", ""))[2] or "other"))
            elif state == "online":
                steps.append(_Step(_CANCEL, where))
        if not category:
            continue
        policy = policy or alarms.stored_policy(raw_policy)
        if category in policy.restricted:
            continue
        jobs = alarms.plan(policy, alarm_id, household, category, recipients, now, delay=delay)
        room, name, _ = devices.get(dev, ("", "", ""))
        params = {
            "id": alarm_id,
            "household": household,
            "hub": hub_id,
            "dev": dev,
            "category": category,
            "urgent": category == "smoke",
            "place": str(room or name or ""),
            "raised": ts,
            "now": now,
            "late": now - ts > alarms.LATE_AFTER_S,
            "jobs": msgspec.json.encode(jobs).decode(),
        }
        steps.append(_Step(_OPEN, params, smoke_jobs=len(jobs) if category == "smoke" else -1))
    return steps
