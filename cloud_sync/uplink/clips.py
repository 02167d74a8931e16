"""The clips lane: each clip's record, then its ciphertext from the spool in resumable, bandwidth-capped chunks;
it counts as synced only when the register says it is complete and its digest is ours."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from cloud_sync import protocol as p
from cloud_sync.uplink.client import (
    JSON_HEADERS,
    ClipGone,
    ClipNotReady,
    RegisterClient,
    RegisterRejected,
    in_thread,
)
from cloud_sync.uplink.lanes import deliver
from cloud_sync.uplink.link import IDLE_POLL_S, Link, wait
from gateway.model import Lane
from gateway.store import OutboxItem

log = logging.getLogger(__name__)

CLIP_CHUNK = 1024 * 1024


async def clip_loop(link: Link, hub_id: str, spool_dir: Path | None) -> None:
    lane = Lane.CLIPS.value
    client = link.client(shared=True)
    status = link.status[lane]
    status.cursor = link.store.synced_seq(lane)
    waiter = link.store.lane_waiter(lane)
    try:
        while True:
            waiter.clear()
            items = await link.store.pending(lane, after=status.cursor, limit=10)
            if not items:
                await wait(waiter, IDLE_POLL_S)
                continue
            for item in items:
                try:
                    async for attempt in link.retrying(lane):
                        with attempt:
                            await _upload(link, client, spool_dir, item)
                except RegisterRejected as exc:
                    await link.store.dead_letter(lane, item.seq, str(exc))
                    status.dead_lettered += 1
                except ClipGone:
                    await _abandon(link, client, lane, item)
                else:
                    await deliver(link, client, hub_id, lane, [item])
                    continue
                status.cursor = item.seq
                link.store.mark_synced(lane, item.seq)
    finally:
        link.release(client)


async def _upload(link: Link, client: RegisterClient, spool_dir: Path | None, item: OutboxItem) -> None:
    """Resumable upload: ask the register how much it holds, send the rest in chunks, bandwidth-capped. Done
    only when the register says the clip is complete *and* the digest it verified is ours; with every byte
    held but the completion lost (a register killed in between), an empty chunk at the end completes it."""
    record = item.body
    clip_id = str(record["clip_id"])
    if spool_dir is None:
        raise RegisterRejected("no clip spool configured", status=0)
    path = spool_dir / f"{clip_id}.age"
    size = int(record["size"])
    resp = await in_thread(client.request, "PUT", f"/v1/clips/{clip_id}", data=json.dumps(record), headers=JSON_HEADERS)
    state = client.decode(resp, p.ClipUploadStatus)
    cap = link.config.clip_bandwidth_bytes_per_s
    offset = state.offset
    while not state.complete:
        if not 0 <= offset <= size:
            raise client.bad_reply(f"clip upload: the register holds {offset} bytes of a {size}-byte clip")
        try:
            chunk = await asyncio.to_thread(_read_chunk, path, offset, CLIP_CHUNK)
        except FileNotFoundError:
            if await link.store.has_clip(clip_id):
                # Indexed a moment before it is renamed into the spool: it will be there.
                raise ClipNotReady("an indexed clip is not in the spool yet") from None
            raise ClipGone(clip_id) from None
        if offset < size and not chunk:
            raise RegisterRejected("a clip's spool file is shorter than its record", status=0)
        started = time.monotonic()
        try:
            resp = await in_thread(
                client.request,
                "PATCH",
                f"/v1/clips/{clip_id}",
                params={"offset": offset},
                data=chunk,
                headers={"Content-Type": p.CLIP_CONTENT_TYPE},
            )
        except RegisterRejected as exc:
            if exc.status != 409 or exc.offset is None:
                raise
            offset = int(exc.offset)  # the register holds a different amount (a lost reply): resume there
            continue
        state = client.decode(resp, p.ClipUploadStatus)
        if not state.complete and state.offset == offset and not chunk:
            raise client.bad_reply("clip upload: the register left a clip incomplete with every byte held")
        offset = state.offset
        if cap:
            await asyncio.sleep(max(0.0, len(chunk) / cap - (time.monotonic() - started)))
    if state.sha256 != record["sha256"]:
        raise client.bad_reply("clip upload: the register completed a clip with another digest")


async def _abandon(link: Link, client: RegisterClient, lane: str, item: OutboxItem) -> None:
    """The clip was erased or expired on the hub while it uploaded: tell the register to drop what it holds."""
    clip_id = str(item.body["clip_id"])
    log.info("a clip was erased or expired while it uploaded; its upload is dropped")
    try:
        async for attempt in link.retrying(lane):
            with attempt:
                await in_thread(client.request, "DELETE", f"/v1/clips/{clip_id}")
    except RegisterRejected as exc:  # e.g. the register never had it: nothing to drop
        log.info("the register had nothing to drop for an erased clip (%s)", exc.status)


def _read_chunk(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)
