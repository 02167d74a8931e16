"""Child process for the clip chaos test: a hub's clip path without the camera. At start it reconciles the spool
with the store as the daemon does, runs the uplink, then seals, indexes and publishes clips with the camera
driver's own steps, printing ``INDEXED <id> <record JSON>`` the moment each index commits; with ``--until-synced``
it waits for the clips lane to drain and prints ``SYNCED``; with ``--no-uplink`` it only records and exits. Killed at
any instant by the test.

Usage: ``python -m tests.support.clip_chaos_child STATE URL RECIPIENT ROUND CLIPS [--until-synced|--no-uplink]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import sys
import time
from pathlib import Path

import msgspec

from cloud_sync.uplink import HubIdentity, Uplink
from gateway import crypto
from gateway.config import UplinkSection
from gateway.model import Clip, Lane
from gateway.store import Store
from gateway.store.clips import encrypt_clip
from gateway.store.clipspool import index_and_publish, reconcile


def plaintext(clip_id: str) -> bytes:
    """The clip's content, reproducible from its id so that the test can check what a member decrypts."""
    rng = random.Random(clip_id)
    return rng.randbytes(rng.randint(200_000, 2_500_000))


async def main(
    state: Path, url: str, recipient: str, round_no: int, clips: int, *, until_synced: bool, uplink_on: bool
) -> None:
    key = crypto.load_master_key(state)
    spool = state / "spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.05) as store:
        await reconcile(store, spool)
        print("READY", flush=True)
        config = UplinkSection(
            enabled=True,
            register_url=url,
            backoff_initial=0.05,
            backoff_max=0.5,
            command_poll_wait=1,
            read_timeout=10,
            connect_timeout=2,
        )
        uplink = Uplink(store, config, HubIdentity(state), spool_dir=spool, rng=random.Random(round_no))
        task = asyncio.create_task(uplink.run() if uplink_on else asyncio.Event().wait())

        async def index(clip: Clip, sealed: Path) -> None:
            await store.add_item(Lane.CLIPS, clip.started, msgspec.to_builtins(clip), ref=clip.clip_id)
            print(f"INDEXED {clip.clip_id} {msgspec.json.encode(clip).decode()}", flush=True)

        for i in range(clips):
            clip_id = f"r{round_no:02d}c{i}"
            clip, sealed = await asyncio.to_thread(
                encrypt_clip,
                io.BytesIO(plaintext(clip_id)),
                spool=spool,
                clip_id=clip_id,
                recipients=[recipient],
                device_id="camera:chaos",
                started=time.time(),
                duration_s=4.0,
                reason="chaos",
                publish=False,
            )
            await index_and_publish(clip, sealed, index)
        if not uplink_on:
            pass
        elif until_synced:
            while (await store.depth())[Lane.CLIPS.value]:
                await asyncio.sleep(0.1)
            await store.flush()
            print("SYNCED", flush=True)
        else:
            await asyncio.Event().wait()  # uploading until killed
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            Path(args[0]),
            args[1],
            args[2],
            int(args[3]),
            int(args[4]),
            until_synced="--until-synced" in args,
            uplink_on="--no-uplink" not in args,
        )
    )
