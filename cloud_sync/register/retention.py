"""Retention (delete everything older than the period, in bounded batches) and erasure, per household or narrower.

Batches keep each transaction short so ingest is never blocked for long while a large backlog is purged. Every run
ends with :func:`cloud_sync.register.scrub.scrub`, so that what was deleted also leaves the engine's files. The
tables covered are :data:`cloud_sync.register.db.HOUSEHOLD_TABLES`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, false, insert, or_, select, true, tuple_

from cloud_sync.protocol import ERASURE_CATEGORIES, ErasureRequest
from cloud_sync.receipts import ReceiptInvalid, verify
from cloud_sync.register import chunks, db, hubexports, partitions
from cloud_sync.register.auth import HubIdentity, new_id
from cloud_sync.register.errors import Invalid
from cloud_sync.register.notify import schema as notify
from cloud_sync.register.registry import Registry, write_audit
from cloud_sync.register.scrub import scrub

log = logging.getLogger(__name__)


def _delete_batched(
    registry: Registry,
    table: Table,
    where: ColumnElement[bool],
    batch: int,
    touched: set[str] | None = None,
    *,
    chunk_hint: ColumnElement[bool] | None = None,
) -> int:
    """Deletes matching rows ``batch`` at a time; adds to ``touched`` the readings partitions it deleted from (so
    that the scrub rewrites those and no others). For ``readings``, the matching readings kept in chunks go too
    (``chunk_hint``: see :func:`.chunks.erase`)."""
    keys = list(table.primary_key.columns)
    track = touched is not None and table is db.readings and registry.engine.dialect.name == "postgresql"
    total = _erase_chunks(registry, where, chunk_hint, touched) if table is db.readings else 0
    while True:
        with registry.engine.begin() as conn:
            chosen = conn.execute(select(*keys).where(where).limit(batch)).all()
            if not chosen:
                return total
            stmt = delete(table).where(tuple_(*keys).in_([tuple(r) for r in chosen]))
            if track and touched is not None:
                touched.update(conn.execute(stmt.returning(partitions.PARTITION_OF)).scalars())
            else:
                conn.execute(stmt)
            total += len(chosen)


def _erase_chunks(
    registry: Registry, where: ColumnElement[bool], hint: ColumnElement[bool] | None, touched: set[str] | None
) -> int:
    with registry.engine.connect() as conn:
        if not chunks.available(conn):
            return 0
    return chunks.erase(registry.engine, where, hint=hint, touched=touched)


def _with_chunks(tables: list[Table]) -> list[Table]:
    """The tables to scrub, with ``reading_chunks`` beside ``readings`` (the scrub skips a table that is not there)."""
    return [*tables, chunks.reading_chunks] if db.readings in tables else tables


def _delete_clips(registry: Registry, where: ColumnElement[bool], batch: int) -> int:
    """Clip rows and their ciphertext: blobs first, so that no blob outlives its row unaccounted for."""
    total = 0
    while True:
        with registry.engine.connect() as conn:
            doomed = conn.execute(select(db.clips.c.household_id, db.clips.c.clip_id).where(where).limit(batch)).all()
        if not doomed:
            return total
        for household_id, clip_id in doomed:
            registry.blobs.delete(household_id, clip_id)
        with registry.engine.begin() as conn:
            conn.execute(
                delete(db.clips).where(
                    tuple_(db.clips.c.household_id, db.clips.c.clip_id).in_([tuple(r) for r in doomed])
                )
            )
        total += len(doomed)


def purge_expired(registry: Registry, *, now: float | None = None, batch: int = 5000) -> dict[str, object]:
    """Delete every household record, clip (row and blob), finished command, receipt and audit entry older than
    ``settings.retention_days``; then scrub. Returns counts per table."""
    at = time.time() if now is None else now
    cutoff = at - registry.settings.retention_days * 86_400
    summary: dict[str, object] = {}
    touched: set[str] = set()
    # Readings on PostgreSQL: whole weeks go at once, and the weeks ahead are made (see cloud_sync.register.partitions).
    dropped = partitions.drop_expired(registry.engine, cutoff)
    summary["readings_partitions_dropped"] = sorted(dropped)
    if registry.engine.dialect.name == "postgresql":
        with registry.engine.begin() as conn:
            if partitions.is_partitioned(conn):
                partitions.ensure_partitions(conn, at, registry.settings.retention_days)
    for table, columns in db.HOUSEHOLD_TABLES.items():
        if not columns:
            continue
        # Either clock makes a row old: the hub's (when it was recorded) or ours (when it arrived). A clip recorded
        # 200 days ago and uploaded yesterday is 200 days old.
        if table is db.clips:
            summary[table.name] = _delete_clips(registry, or_(*(table.c[col] < cutoff for col in columns)), batch)
        else:
            # One clock at a time: each predicate can use its own index (and on partitioned readings, ``ts`` prunes
            # to the few partitions that can still hold an old reading), where their OR would scan every row.
            summary[table.name] = sum(
                _delete_batched(
                    registry, table, table.c[col] < cutoff, batch, touched, chunk_hint=_chunk_clock(col, cutoff)
                )
                for col in columns
            ) + (sum(dropped.values()) if table is db.readings else 0)
    summary["commands"] = _delete_batched(
        registry, db.commands, (db.commands.c.issued_at < cutoff) & (db.commands.c.status != "pending"), batch
    )
    summary["enroll_tokens"] = _delete_batched(
        registry, db.enroll_tokens, db.enroll_tokens.c.expires_at < cutoff, batch
    )
    summary["erasure_receipts"] = _delete_batched(
        registry, db.erasure_receipts, db.erasure_receipts.c.at < cutoff, batch
    )
    summary["audit"] = _delete_batched(registry, db.audit, db.audit.c.at < cutoff, batch)
    # The hub's sealed copies live a week whatever the retention period (docs/app.md).
    summary["hub_exports"] = hubexports.purge_expired(registry, now=now)
    summary["scrub"] = scrub(
        registry.engine, _with_chunks([*db.HOUSEHOLD_TABLES, db.erasure_receipts, db.audit]), partitions=touched
    )
    registry.audit("register:retention", "retention.purge", None, counts=summary)
    log.info("retention purge done: %s", summary)
    return summary


def _chunk_clock(column: str, cutoff: float) -> ColumnElement[bool] | None:
    """Which chunks can hold a reading older than ``cutoff`` by ``column`` (readings' ``ts`` or ``received_at``)."""
    c = chunks.reading_chunks.c
    return {"ts": c.ts_first < cutoff, "received_at": c.received_at < cutoff}.get(column)


def erase_household(
    registry: Registry,
    household_id: str,
    *,
    actor: str,
    close: bool = False,
    batch: int = 5000,
    before: float | None = None,
    tell_hubs: bool = True,
    receipt_id: str = "",
) -> dict[str, object]:
    """Erase every row and clip blob of a household ("Poista tietoni"); returns counts per table and the
    register's signed receipt (``receipt``).

    The household and its hubs keep working, and each hub gets an ``erase`` command carrying the register's
    receipt, so that its own copy goes too and its receipt covers both sides (``tell_hubs=False`` when a hub asked:
    it has erased already). ``before`` is when the erasure was asked (default now): items a hub delivers later
    that were recorded before it are acknowledged but never stored. With ``close`` the household leaves the
    service instead: its hubs and API tokens are revoked *first* (so nothing new arrives while erasing) and its
    name is blanked. The household id and its audit trail stay as the record that the erasure happened.
    """
    asked = time.time() if before is None else before
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        current = conn.execute(
            select(db.households.c.erased_before).where(db.households.c.id == household_id)
        ).scalar_one()
        conn.execute(
            db.households.update()
            .where(db.households.c.id == household_id)
            .values(erased_before=max(float(current), asked))
        )
        revoked = 0
        if close:
            revoked = conn.execute(
                db.hubs.update().where(db.hubs.c.household_id == household_id).values(revoked=True, name="")
            ).rowcount
            conn.execute(
                db.api_tokens.update().where(db.api_tokens.c.household_id == household_id).values(revoked=True)
            )
            conn.execute(db.households.update().where(db.households.c.id == household_id).values(name=""))
    summary: dict[str, object] = {}
    touched: set[str] = set()
    # The signed member list (ids and public keys, no names) stays while the household does: its hubs need the
    # next version to follow the one they hold; a closed household's goes too.
    for table in [*db.HOUSEHOLD_TABLES, *([db.member_log] if close else [])]:
        summary[table.name] = _delete_batched(registry, table, table.c.household_id == household_id, batch, touched)
    # Blobs after their rows, so no request can find a clip row whose ciphertext is already gone.
    summary["blobs"] = registry.blobs.delete_household(household_id)
    summary["hubs_revoked"] = revoked
    summary["audit_targets_blanked"] = _blank_audit_targets(registry, household_id)
    # ``households`` too: earlier versions of its row (the name, before a closing blanked it) must not outlive the
    # erasure in dead row versions; ``hubs`` likewise for the hubs' names when closing.
    rewritten = [db.households, *([db.hubs] if close else [])]
    summary["scrub"] = scrub(
        registry.engine, _with_chunks([*db.HOUSEHOLD_TABLES, db.audit, *rewritten]), partitions=touched
    )
    counts = {k: v for k, v in summary.items() if k != "scrub"}
    receipt = _receipt(registry, household_id, receipt_id, "all", "", actor, asked, counts, summary["scrub"])
    summary["receipt"] = receipt
    with registry.engine.begin() as conn:
        write_audit(conn, actor, "household.erase", household_id, counts=counts, close=close)
    if not close and tell_hubs:
        # After the deletes, which include the household's old commands.
        summary["hub_commands"] = registry.queue_command(
            household_id, "erase", {"scope": "all", "register_receipt": receipt}, actor=actor
        )
    log.info("erased household data (close=%s): %s", close, counts)
    return summary


def _blank_audit_targets(registry: Registry, household_id: str) -> int:
    """The audit trail stays (who did what, when) but stops naming what no longer exists: the ids of erased clips,
    members and commands. Hub ids stay: they name the enrollment, which the household keeps."""
    with registry.engine.begin() as conn:
        return int(
            conn.execute(
                db.audit.update()
                .where(
                    db.audit.c.household_id == household_id, db.audit.c.target != "", ~db.audit.c.action.like("hub.%")
                )
                .values(target="")
            ).rowcount
        )


def _receipt(
    registry: Registry,
    household_id: str,
    receipt_id: str,
    scope: str,
    target: str,
    actor: str,
    asked: float,
    counts: dict[str, object],
    scrubbed: object,
) -> dict[str, Any]:
    rid = receipt_id or new_id("rcpt")
    body = {
        "receipt_id": rid,
        "side": "register",
        "household": household_id,
        "scope": scope,
        "target": target,
        "requested_by": actor,
        "requested_at": asked,
        "completed_at": time.time(),
        "erased": counts,
        "scrub": scrubbed,
    }
    signed = registry.ca.sign_receipt(body)
    with registry.engine.begin() as conn:
        conn.execute(
            insert(db.erasure_receipts).values(household_id=household_id, receipt_id=rid, at=time.time(), body=signed)
        )
    return signed


def _alarms_and_their_jobs(household_id: str, which: ColumnElement[bool]) -> dict[Table, ColumnElement[bool]]:
    """Alarms raised from what is erased, and who was told of them: the jobs first (found through their alarm)."""
    theirs = (notify.alarms.c.household_id == household_id) & which
    return {
        notify.notify_jobs: (notify.notify_jobs.c.household_id == household_id)
        & notify.notify_jobs.c.alarm_id.in_(select(notify.alarms.c.id).where(theirs)),
        notify.alarms: theirs,
    }


def _narrow(household_id: str, scope: str, target: str) -> dict[Table, ColumnElement[bool]]:
    """What a device or category erasure deletes: a predicate per table (clips included; blobs follow rows), the
    notifications derived from it too: a device's alarms, smoke alarms with the alarm lane, health alerts and the
    hubs' heartbeats with diagnostics."""
    mine = {t: t.c.household_id == household_id for t in (db.readings, db.events, db.clip_records, db.clips)}
    if scope == "device":
        out: dict[Table, ColumnElement[bool]] = _alarms_and_their_jobs(
            household_id, notify.alarms.c.device_id == target
        )
        out |= {t: w & (t.c.device_id == target) for t, w in mine.items()}
        out[db.devices] = (db.devices.c.household_id == household_id) & (db.devices.c.device_id == target)
        return out
    spec = ERASURE_CATEGORIES.get(target)
    if spec is None:
        raise Invalid(f"category must be one of {', '.join(ERASURE_CATEGORIES)}", code="invalid")
    lanes, kinds = spec["lanes"], spec["event_kinds"]
    event_lanes = [lane for lane in lanes if lane in ("alarm", "events")]
    derived: dict[Table, ColumnElement[bool]] = {}
    if target == "alarms":
        derived = _alarms_and_their_jobs(household_id, notify.alarms.c.category == "smoke")
    elif target == "diagnostics":
        derived = _alarms_and_their_jobs(household_id, notify.alarms.c.category != "smoke")
        derived[db.hub_health] = db.hub_health.c.household_id == household_id
    return derived | {
        db.readings: mine[db.readings] & (true() if "readings" in lanes else false()),
        db.events: mine[db.events]
        & or_(db.events.c.lane.in_(event_lanes), db.events.c.kind.in_(kinds) if kinds else false()),
        db.clip_records: mine[db.clip_records] & (true() if "clips" in lanes else false()),
        db.clips: mine[db.clips] & (true() if "clips" in lanes else false()),
        db.diagnostics: (db.diagnostics.c.household_id == household_id)
        & (true() if "diagnostics" in lanes else false()),
    }


def erase_from_hub(registry: Registry, hub: HubIdentity, req: ErasureRequest, *, batch: int = 5000) -> dict[str, Any]:
    """An erasure asked on a hub (``POST /v1/erasures``): erase the same scope here, tell the household's other
    hubs, and answer with the register's signed receipt. A resent request gets the first receipt back."""
    with registry.engine.connect() as conn:
        done = conn.execute(
            select(db.erasure_receipts.c.body).where(
                db.erasure_receipts.c.household_id == hub.household_id,
                db.erasure_receipts.c.receipt_id == req.receipt_id,
            )
        ).scalar()
    if done is not None:
        return dict(done)
    try:
        signer = verify(req.hub_receipt, registry.ca.cert_pem).signer
    except ReceiptInvalid as exc:
        raise Invalid(f"the hub's receipt does not verify: {exc}", code="bad_receipt") from exc
    if (
        signer != f"hub:{hub.household_id}:{hub.hub_id}"
        or req.hub_receipt["receipt"].get("receipt_id") != req.receipt_id
    ):
        raise Invalid("the hub's receipt was not signed by this hub for this erasure", code="bad_receipt")
    if req.scope == "all":
        summary = erase_household(
            registry,
            hub.household_id,
            actor=hub.actor,
            before=req.requested_at,
            tell_hubs=False,
            receipt_id=req.receipt_id,
        )
        receipt: dict[str, Any] = summary["receipt"]  # type: ignore[assignment]
        args: dict[str, Any] = {"scope": "all", "register_receipt": receipt}
    else:
        counts: dict[str, object] = {}
        touched: set[str] = set()
        for table, where in _narrow(hub.household_id, req.scope, req.target).items():
            if table is db.clips:
                counts[table.name] = _delete_clips(registry, where, batch)
            else:
                counts[table.name] = _delete_batched(registry, table, where, batch, touched)
        scrubbed = scrub(
            registry.engine,
            [
                db.readings,
                chunks.reading_chunks,
                db.events,
                db.clip_records,
                db.clips,
                db.diagnostics,
                db.devices,
                db.hub_health,
                notify.notify_jobs,
                notify.alarms,
            ],
            partitions=touched,
        )
        receipt = _receipt(
            registry,
            hub.household_id,
            req.receipt_id,
            req.scope,
            req.target,
            hub.actor,
            req.requested_at,
            counts,
            scrubbed,
        )
        with registry.engine.begin() as conn:
            write_audit(conn, hub.actor, "household.erase", hub.household_id, req.scope, counts=counts)
        args = {"scope": req.scope, "target": req.target, "register_receipt": receipt}
    with registry.engine.connect() as conn:
        others = (
            conn.execute(
                select(db.hubs.c.id).where(
                    db.hubs.c.household_id == hub.household_id, db.hubs.c.revoked.is_(False), db.hubs.c.id != hub.hub_id
                )
            )
            .scalars()
            .all()
        )
    for other in others:
        registry.queue_command(hub.household_id, "erase", args, hub_id=other, actor=hub.actor)
    return receipt


def settle_hub_erasure(registry: Registry, hub: HubIdentity, detail: dict[str, Any]) -> dict[str, object]:
    """A hub reports it erased everything (its receipt): what it recorded before it started — including what it
    delivered between the register's erasure and its own — goes here too, so both sides end with the same."""
    receipt = detail.get("receipt")
    asked = receipt.get("requested_at") if isinstance(receipt, dict) else None
    if not isinstance(receipt, dict) or receipt.get("scope") != "all" or not isinstance(asked, int | float):
        return {}
    with registry.engine.begin() as conn:
        current = conn.execute(
            select(db.households.c.erased_before).where(db.households.c.id == hub.household_id)
        ).scalar_one()
        conn.execute(
            db.households.update()
            .where(db.households.c.id == hub.household_id)
            .values(erased_before=max(float(current), float(asked)))
        )
    counts: dict[str, object] = {}
    touched: set[str] = set()
    for table, column in ((db.readings, "ts"), (db.events, "ts"), (db.clip_records, "started"), (db.diagnostics, "ts")):
        where = (table.c.hub_id == hub.hub_id) & (table.c[column] < asked)
        hint = (chunks.reading_chunks.c.hub_id == hub.hub_id) & (chunks.reading_chunks.c.ts_first < asked)
        counts[table.name] = _delete_batched(registry, table, where, 5000, touched, chunk_hint=hint)
    counts["clips"] = _delete_clips(registry, (db.clips.c.hub_id == hub.hub_id) & (db.clips.c.started < asked), 5000)
    if any(counts.values()):
        counts["scrub"] = scrub(
            registry.engine,
            [db.readings, chunks.reading_chunks, db.events, db.clip_records, db.diagnostics, db.clips],
            partitions=touched,
        )
    return counts
