"""The storage watch reports a nearly full disk once per episode, and not while diagnostics are restricted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import storage_watch
from gateway.hub import Hub
from gateway.model import Category
from tests.support.stores import open_store


def test_is_low() -> None:
    assert storage_watch.is_low(free=5, total=100, reserve=0)
    assert not storage_watch.is_low(free=50, total=100, reserve=0)
    assert storage_watch.is_low(free=50, total=100, reserve=30)


@pytest.mark.parametrize("restricted", [False, True])
async def test_reports_once_per_episode_unless_restricted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restricted: bool
) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        if restricted:
            await hub.set_restricted(Category.DIAGNOSTICS, True, actor="test")
        script = [5, 5, 50, 5, 5]  # low, low (same episode), recovered, low (a new episode), low
        checks: list[int] = []

        def disk_usage() -> dict[str, int]:
            checks.append(1)
            return {"free_bytes": script[min(len(checks), len(script)) - 1], "total_bytes": 100, "db_bytes": 1}

        monkeypatch.setattr(store, "disk_usage", disk_usage)
        added: list[dict[str, Any]] = []
        original = store.add_item

        async def add_item(lane: Any, ts: float, body: dict[str, Any], **kw: Any) -> int:
            added.append(body)
            return await original(lane, ts, body, **kw)

        monkeypatch.setattr(store, "add_item", add_item)
        task = asyncio.create_task(storage_watch.watch_storage(hub, reserve=0, interval=0))
        while len(checks) < len(script) + 1:
            await asyncio.sleep(0.001)
        task.cancel()
        assert [b["event"] for b in added] == ([] if restricted else ["storage_low", "storage_low"])
