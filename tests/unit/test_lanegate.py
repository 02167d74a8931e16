"""How many bulk batches a register process runs in PostgreSQL at once: the pool's share, or fewer if configured."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from cloud_sync.register.lanegate import LaneGate
from cloud_sync.register.settings import Settings


def test_the_bulk_limit_is_the_pools_share_unless_set_lower() -> None:
    assert LaneGate(16, 8).bulk_limit == 14
    assert LaneGate(16, 8, bulk_limit=2).bulk_limit == 2
    assert LaneGate(16, 8, bulk_limit=40).bulk_limit == 14  # never more than the pool can serve
    assert LaneGate(2, 8).bulk_limit == 1


async def test_no_more_bulk_batches_run_at_once_than_the_limit() -> None:
    gate = LaneGate(16, 8, bulk_limit=2)
    running, most = 0, 0
    lock = anyio.Lock()
    release = anyio.Event()

    def work() -> None:
        anyio.from_thread.run(release.wait)

    async def one() -> None:
        nonlocal running, most
        async with lock:
            running += 1
            most = max(most, running)
        await gate.run("readings", work)
        async with lock:
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
        with anyio.fail_after(10):
            while gate._bulk_threads.borrowed_tokens < 2:
                await anyio.sleep(0.01)
        assert gate._bulk_threads.borrowed_tokens == 2
        assert gate._bulk_threads.statistics().tasks_waiting == 4
        # The alarm lane is not held up by them.
        with anyio.fail_after(10):
            assert await gate.run("alarm", lambda: "acked") == "acked"
        release.set()


def test_settings_refuse_a_zero_limit_and_a_bad_alarm_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bulk_ingest_limit"):
        Settings(state_dir=tmp_path, bulk_ingest_limit=0)
    with pytest.raises(ValueError, match="alarm_port"):
        Settings(state_dir=tmp_path, alarm_port=0)
    with pytest.raises(ValueError, match="bulk_nice"):
        Settings(state_dir=tmp_path, bulk_nice=20)
