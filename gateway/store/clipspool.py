"""The clip spool, the store's: sealed clips on disk, and its one rule: it holds exactly the sealed clips the store
knows, whatever instant a kill hits.

A clip is sealed to ``<id>.age.tmp`` (fsynced), *then* indexed in the store, *then* renamed to ``<id>.age``
(:func:`index_and_publish`). At start-up, before anything records or uploads, :func:`reconcile_spool` finishes what a
kill interrupted: an indexed ``.tmp`` is renamed into place, any other ``.tmp`` is deleted, and an ``.age`` the store
does not know (its erasure or expiry deleted the rows, then was cut off before the file) is deleted too.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.model import Clip, Lane
from gateway.store import Store, schema

log = logging.getLogger(__name__)

CLIP_SUFFIX = ".age"
TMP_SUFFIX = ".age.tmp"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


OnClip = Callable[[Clip, Path], Awaitable[None]]


class ClipSpool:
    """The spool as a camera driver sees it (:class:`drivers.base.ClipSealer`): it seals a clip to the household's
    current recipients into ``<id>.age.tmp``; the hub then indexes and publishes it (``HubPort.clip_sealed``). The
    recipients are asked for at every clip, so a new member list applies to the next clip without anyone telling
    the camera."""

    def __init__(self, directory: Path, recipients: Callable[[], Sequence[str]]) -> None:
        self.directory = directory
        self._recipients = recipients

    def recipients(self) -> int:
        return len(self._recipients())

    def check(self) -> None:
        """Raises :class:`~gateway.store.clips.RecipientError` if no clip could be sealed now (no valid
        recipients), so a recording is refused before it starts rather than after the post-roll."""
        from gateway.store.clips import parse_recipients  # the age library loads only on a hub that records

        parse_recipients(self._recipients())

    def seal(
        self, plaintext: io.RawIOBase | BinaryIO, *, clip_id: str, device_id: str, started: float, reason: str
    ) -> tuple[Clip, Path]:
        """Blocking (a worker thread): seals ``plaintext`` to ``<id>.age.tmp``, fsynced, not yet in the spool."""
        from gateway.store.clips import encrypt_clip

        return encrypt_clip(
            plaintext,
            spool=self.directory,
            clip_id=clip_id,
            recipients=list(self._recipients()),
            device_id=device_id,
            started=started,
            duration_s=0.0,
            reason=reason,
            publish=False,
        )


async def index_and_publish(clip: Clip, sealed: Path, index: OnClip | None) -> Path:
    """Index first, then rename into the spool; returns the final path. If the index refuses the clip, its
    ciphertext is deleted; if the caller is cancelled while indexing, the commit may still land, so the ``.tmp``
    is left for :func:`reconcile_spool` to decide at the next start."""
    try:
        if index is not None:
            await index(clip, sealed)
    except Exception:
        await asyncio.to_thread(sealed.unlink, missing_ok=True)  # never indexed, never sent: not kept
        raise
    return await asyncio.to_thread(publish, sealed)


def publish(sealed: Path) -> Path:
    """Renames a sealed ``<id>.age.tmp`` (already indexed) to ``<id>.age`` durably; returns the final path."""
    if not sealed.name.endswith(TMP_SUFFIX):
        return sealed
    final = sealed.with_name(sealed.name[: -len(TMP_SUFFIX)] + CLIP_SUFFIX)
    os.replace(sealed, final)
    fsync_dir(sealed.parent)
    return final


@dataclass(frozen=True)
class SpoolReport:
    published: int = 0
    """Sealed and indexed, killed before the rename: finished now."""
    removed_partials: int = 0
    """Unfinished or never indexed ``.tmp`` files: deleted."""
    removed_unknown: int = 0
    """Sealed clips the store does not know (their erasure or expiry was cut off after the rows went): deleted."""


def reconcile_spool(spool: Path, known: set[str]) -> SpoolReport:
    """Makes the spool agree with the store's clip index at start-up (blocking), whatever instant a kill hit:

    * ``<id>.age.tmp`` of an indexed clip was sealed and fsynced before it was indexed: renamed into place;
    * any other ``.tmp`` is an unfinished seal (or an index that never committed): deleted;
    * ``<id>.age`` the store does not know was erased or expired (rows first, files after): deleted.
    """
    published = partials = unknown = 0
    if not spool.is_dir():
        return SpoolReport()
    for path in spool.glob(f"*{TMP_SUFFIX}"):
        clip_id = path.name[: -len(TMP_SUFFIX)]
        if clip_id in known:
            publish(path)
            published += 1
        else:
            path.unlink(missing_ok=True)
            partials += 1
    for path in spool.glob(f"*{CLIP_SUFFIX}"):
        if path.name[: -len(CLIP_SUFFIX)] not in known:
            path.unlink(missing_ok=True)
            unknown += 1
    if partials or unknown:
        fsync_dir(spool)
    return SpoolReport(published, partials, unknown)


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
