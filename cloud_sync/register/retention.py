"""Retention (delete everything older than the period, in bounded batches) and per-household erasure.

Batches keep each transaction short so ingest is never blocked for long while a large backlog is purged.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import ColumnElement, Table, delete, select, tuple_

from cloud_sync.register import db
from cloud_sync.register.registry import Registry, write_audit

log = logging.getLogger(__name__)

_TIMED: list[tuple[Table, tuple[str, ...]]] = [
    (db.readings, ("received_at", "ts")),
    (db.events, ("received_at", "ts")),
    (db.clip_records, ("received_at", "started")),
    (db.diagnostics, ("received_at", "ts")),
]


def _delete_batched(registry: Registry, table: Table, where: ColumnElement[bool], batch: int) -> int:
    keys = list(table.primary_key.columns)
    total = 0
    while True:
        with registry.engine.begin() as conn:
            chosen = conn.execute(select(*keys).where(where).limit(batch)).all()
            if not chosen:
                return total
            conn.execute(delete(table).where(tuple_(*keys).in_([tuple(r) for r in chosen])))
            total += len(chosen)


def purge_expired(registry: Registry, *, now: float | None = None, batch: int = 5000) -> dict[str, object]:
    """Delete readings, events, clip records, diagnostics, clips (rows and blobs), finished commands and audit
    entries older than ``settings.retention_days``; returns counts per table."""
    cutoff = (time.time() if now is None else now) - registry.settings.retention_days * 86_400
    summary: dict[str, object] = {}
    for table, columns in _TIMED:
        n = 0
        # Either clock makes a row old: the hub's (when it was measured) or ours (when it arrived).
        for col in columns:
            n += _delete_batched(registry, table, table.c[col] < cutoff, batch)
        summary[table.name] = n
    n_clips = 0
    while True:
        with registry.engine.connect() as conn:
            old = conn.execute(
                select(db.clips.c.household_id, db.clips.c.clip_id).where(db.clips.c.created_at < cutoff).limit(batch)
            ).all()
        if not old:
            break
        for household_id, clip_id in old:
            registry.blobs.delete(household_id, clip_id)
        with registry.engine.begin() as conn:
            conn.execute(
                delete(db.clips).where(tuple_(db.clips.c.household_id, db.clips.c.clip_id).in_([tuple(r) for r in old]))
            )
        n_clips += len(old)
    summary["clips"] = n_clips
    summary["commands"] = _delete_batched(
        registry, db.commands, (db.commands.c.issued_at < cutoff) & (db.commands.c.status != "pending"), batch
    )
    summary["enroll_tokens"] = _delete_batched(
        registry, db.enroll_tokens, db.enroll_tokens.c.expires_at < cutoff, batch
    )
    summary["audit"] = _delete_batched(registry, db.audit, db.audit.c.at < cutoff, batch)
    registry.audit("register:retention", "retention.purge", None, counts=summary)
    log.info("retention purge done: %s", summary)
    return summary


_HOUSEHOLD_TABLES: list[Table] = [
    db.readings,
    db.events,
    db.clip_records,
    db.diagnostics,
    db.devices,
    db.clips,
    db.commands,
    db.member_keys,
    db.members,
    db.enroll_tokens,
    db.consents,
    db.hub_health,
]


def erase_household(
    registry: Registry, household_id: str, *, actor: str, close: bool = False, batch: int = 5000
) -> dict[str, object]:
    """Erase every row and clip blob of a household ("Poista tietoni"); returns counts per table.

    The household and its hubs keep working, and each hub gets an ``erase`` command so that its own copy goes
    too. With ``close`` the household leaves the service instead: its hubs and API tokens are revoked *first*
    (so nothing new arrives while erasing) and its name is blanked. The household id and its audit trail stay
    as the record that the erasure happened.
    """
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        conn.execute(db.households.update().where(db.households.c.id == household_id).values(erased_before=time.time()))
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
    for table in _HOUSEHOLD_TABLES:
        summary[table.name] = _delete_batched(registry, table, table.c.household_id == household_id, batch)
    # Blobs after their rows, so no request can find a clip row whose ciphertext is already gone.
    summary["blobs"] = registry.blobs.delete_household(household_id)
    summary["hubs_revoked"] = revoked
    with registry.engine.begin() as conn:
        counts = {k: v for k, v in summary.items() if k != "hub_commands"}
        write_audit(conn, actor, "household.erase", household_id, counts=counts, close=close)
    if not close:
        # After the deletes, which include the household's old commands.
        summary["hub_commands"] = registry.queue_command(household_id, "erase", {"scope": "all"}, actor=actor)
    log.info("erased household data (close=%s): %s", close, {k: v for k, v in summary.items() if k != "hub_commands"})
    return summary
