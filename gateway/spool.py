"""The hub's side of the clip spool: what the store knows, and the start-up reconciliation against it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from drivers.camera.spool import SpoolReport, reconcile_spool
from gateway.model import Lane
from gateway.store import Store, schema

log = logging.getLogger(__name__)


def _clip_ids(conn: Connection) -> set[str]:
    rows = conn.execute(sa.select(schema.items.c.ref).where(schema.items.c.lane == Lane.CLIPS.value))
    return {ref for (ref,) in rows if ref}


async def known_clips(store: Store) -> set[str]:
    """The ids of every clip the store indexes."""
    return set(await asyncio.to_thread(store.read, _clip_ids))


async def reconcile(store: Store, spool: Path) -> SpoolReport:
    """Before anything records or uploads: the spool holds exactly the clips the store knows."""
    report = await asyncio.to_thread(reconcile_spool, spool, await known_clips(store))
    if report.published:
        log.warning("finished %d clip(s) sealed and indexed just before a crash", report.published)
    if report.removed_partials:
        log.warning("removed %d clip(s) left unfinished by a crash", report.removed_partials)
    if report.removed_unknown:
        log.warning("removed %d clip file(s) whose erasure or expiry a crash cut short", report.removed_unknown)
    return report
