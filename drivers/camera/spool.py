"""The spool's one rule: it holds exactly the sealed clips the store knows, whatever instant a kill hits.

A clip is sealed to ``<id>.age.tmp`` (fsynced), *then* indexed in the store, *then* renamed to ``<id>.age``
(:func:`index_and_publish`). At start-up, before anything records or uploads, :func:`reconcile_spool` finishes what a
kill interrupted: an indexed ``.tmp`` is renamed into place, any other ``.tmp`` is deleted, and an ``.age`` the store
does not know (its erasure or expiry deleted the rows, then was cut off before the file) is deleted too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.camera.clipcrypt import CLIP_SUFFIX, TMP_SUFFIX, fsync_dir
from gateway.model import Clip

OnClip = Callable[[Clip, Path], Awaitable[None]]


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
