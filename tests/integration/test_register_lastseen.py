"""The alarm lane's deferred last-seen writes (PostgreSQL): written in one transaction, never back in time, and a
write that fails is logged and dropped without raising into anyone's request."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select

from cloud_sync.register import db
from cloud_sync.register.lastseen import DeferredLastSeen
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings


def test_written_together_never_back_in_time_and_failures_dropped(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = Registry(Settings(state_dir=tmp_path, db_url=postgres_url))
    try:
        household = reg.create_household("koti", actor="test")
        with reg.engine.begin() as conn:
            for hub, seen in (("hub_a", 1000.0), ("hub_b", None)):
                row = {"id": hub, "household_id": household, "cert_sha256": "0" * 64, "enrolled_at": 1.0}
                conn.execute(insert(db.hubs).values(**row, last_seen=seen, revoked=False))

        def seen() -> dict[str, float | None]:
            with reg.engine.connect() as conn:
                return {r.id: r.last_seen for r in conn.execute(select(db.hubs.c.id, db.hubs.c.last_seen))}

        deferred = DeferredLastSeen(reg.engine, flush_s=0.05)
        deferred.seen("hub_a", 500.0)  # older than what is held: kept as it is
        deferred.seen("hub_b", 2000.0)
        deferred.seen("hub_b", 1500.0)  # the later of two times given
        deadline = time.monotonic() + 30
        while seen() != {"hub_a": 1000.0, "hub_b": 2000.0}:
            assert time.monotonic() < deadline, seen()
            time.sleep(0.02)
        deferred.seen("hub_a", 3000.0)
        deferred.close()  # writes what is pending
        assert seen() == {"hub_a": 3000.0, "hub_b": 2000.0}

        # A database that cannot be reached: logged, dropped, nothing raised.
        unreachable = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
        broken = DeferredLastSeen(unreachable, flush_s=3600)
        broken.seen("hub_a", 4000.0)
        with caplog.at_level(logging.WARNING, logger="cloud_sync.register.lastseen"):
            broken.close()
        assert any("could not record 1 hubs' last-seen" in r.getMessage() for r in caplog.records)
        assert seen()["hub_a"] == 3000.0
    finally:
        reg.close()
