"""On PostgreSQL an ingest request checks its hub in the transaction that stores the batch (one pool checkout per
request, docs/scale.md "Run G"); every promise of the separate check still holds over real TLS."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, select

from cloud_sync.enroll import renew
from cloud_sync.register import db, retention
from tests.integration.test_register import batch, error_of, post
from tests.integration.test_register import event as smoke
from tests.integration.test_register_certs import stolen_copy
from tests.support.register import RunningRegister


def _checkouts(register: RunningRegister) -> list[int]:
    """A counter of the main pool's and the alarm pool's checkouts, as a one-item list."""
    n = [0]

    def count(*_: Any) -> None:
        n[0] += 1

    for engine in {register.reg.engine, register.reg.urgent_engine}:
        event.listen(engine, "checkout", count)
    return n


def test_an_ingest_request_takes_one_connection_and_one_transaction(register_pg: RunningRegister) -> None:
    hub = register_pg.enroll()
    s = hub.session()
    assert post(register_pg, s, "readings", batch(hub, "readings", range(3))).status_code == 200  # connected, seen
    n = _checkouts(register_pg)
    for lane, first, body in (("readings", 3, None), ("events", 0, smoke), ("alarm", 0, smoke)):
        data = batch(hub, lane, range(first, first + 3)) if body is None else batch(hub, lane, range(3), body)
        before = n[0]
        ack = post(register_pg, s, lane, data).json()
        assert ack["stored"] == 3, (lane, ack)
        assert n[0] - before == 1, f"{lane}: {n[0] - before} checkouts"
    # A resend (the straight COPY refused by the key, then the stage) still stores nothing twice, on one connection.
    before = n[0]
    ack = post(register_pg, s, "readings", batch(hub, "readings", range(2, 8))).json()
    assert (ack["stored"], ack["duplicates"], n[0] - before) == (2, 4, 1)
    assert [seq for seq, _ in register_pg.items(hub.hub_id, "readings")] == list(range(8))


def test_a_revoked_or_unknown_hub_stores_nothing_on_any_lane(register_pg: RunningRegister) -> None:
    hub, other = register_pg.enroll(), register_pg.enroll()
    s = hub.session()
    assert post(register_pg, s, "readings", batch(hub, "readings", range(2))).status_code == 200
    register_pg.reg.revoke_hub(hub.hub_id, actor="test")
    for lane, data in (
        ("readings", batch(hub, "readings", range(2, 4))),
        ("alarm", batch(hub, "alarm", range(2), smoke)),
        ("alarm", batch(hub, "alarm", [])),
        ("events", b"not zstd at all"),  # refused as revoked before its body is even looked at
    ):
        r = post(register_pg, s, lane, data)
        assert (r.status_code, error_of(r)) == (403, "hub_revoked"), lane
    assert [seq for seq, _ in register_pg.items(hub.hub_id, "readings")] == [0, 1]
    assert register_pg.items(hub.hub_id, "alarm") == []
    # A hub whose row is gone (its household closed) is refused the same way; the other hub is untouched.
    with register_pg.reg.engine.begin() as conn:
        conn.execute(db.hubs.delete().where(db.hubs.c.id == other.hub_id))
    r = post(register_pg, other.session(), "readings", batch(other, "readings", range(2)))
    assert (r.status_code, error_of(r)) == (403, "hub_unknown")
    assert register_pg.items(other.hub_id, "readings") == []


def test_the_checks_last_seen_commits_with_the_batch(register_pg: RunningRegister) -> None:
    hub = register_pg.enroll()

    def last_seen() -> float | None:
        with register_pg.reg.engine.connect() as conn:
            return conn.execute(select(db.hubs.c.last_seen).where(db.hubs.c.id == hub.hub_id)).scalar()

    with register_pg.reg.engine.begin() as conn:
        conn.execute(db.hubs.update().where(db.hubs.c.id == hub.hub_id).values(last_seen=0.0))
    register_pg.reg._hub_seen.clear()
    bad = post(register_pg, hub.session(), "readings", b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    assert bad.status_code in (400, 422), bad.text
    assert register_pg.items(hub.hub_id, "readings") == []
    assert last_seen() == 0.0  # the refused request's write was rolled back with it
    register_pg.reg._hub_seen.clear()  # the once-a-minute memo, so that the next request writes it again
    assert post(register_pg, hub.session(), "readings", batch(hub, "readings", range(2))).json()["stored"] == 2
    assert (last_seen() or 0.0) > 0.0


def test_renewal_through_ingest_retires_the_old_certificate(register_pg: RunningRegister, tmp_path: Path) -> None:
    hub = register_pg.enroll()
    thief = stolen_copy(hub, tmp_path)
    assert post(register_pg, thief, "readings", batch(hub, "readings", range(1, 2))).status_code == 200
    renew(register_pg.url, hub.state_dir)
    assert post(register_pg, thief, "readings", batch(hub, "readings", range(2, 3))).status_code == 200
    # The new certificate's first use is an ingest: the promotion commits with the batch.
    assert post(register_pg, hub.session(), "readings", batch(hub, "readings", range(3, 4))).json()["stored"] == 1
    kept = post(register_pg, thief, "readings", batch(hub, "readings", range(4, 5)))
    assert kept.status_code == 401 and error_of(kept) == "cert_retired"
    assert [seq for seq, _ in register_pg.items(hub.hub_id, "readings")] == [1, 2, 3]
    actions = [a["action"] for a in register_pg.reg.audit_entries(hub.household_id)]
    assert actions.count("hub.cert_retired") == 1


def _lock_waits(dsn: str, query: str = "%") -> int:
    """Backends waiting for a lock, running a statement ``LIKE query``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            " AND query LIKE %s",
            (query,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_erasure_waits_for_a_batch_in_flight_and_later_batches_see_its_watermark(
    register_pg: RunningRegister,
) -> None:
    """The admission statement reads the watermark FOR SHARE: an erasure that comes while a batch is being stored
    waits for its commit, then erases it too; a batch from before the erasure sent after it is acked, not stored."""
    hub = register_pg.enroll()
    dsn = register_pg.reg.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    s = hub.session()
    assert post(register_pg, s, "readings", batch(hub, "readings", [0])).json()["stored"] == 1
    # The holder is left first: on a failure its lock goes, and the pool's threads can finish.
    with ThreadPoolExecutor(2) as pool, psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE readings IN EXCLUSIVE MODE")  # the batch's COPY waits, its admission done
        sent = pool.submit(post, register_pg, s, "readings", batch(hub, "readings", range(1, 11)))
        deadline = time.monotonic() + 20
        while _lock_waits(dsn) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        erased = pool.submit(retention.erase_household, register_pg.reg, hub.household_id, actor="test")
        while _lock_waits(dsn, "UPDATE households%") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The erasure's watermark update waits for the batch in flight (for its lock on the household row).
        assert _lock_waits(dsn, "UPDATE households%") == 1 and not erased.done()
        holder.rollback()
        assert sent.result(timeout=30).json()["stored"] == 10
        erased.result(timeout=60)
    assert register_pg.items(hub.hub_id, "readings") == []  # stored before the erasure, so erased with it
    late = post(register_pg, s, "readings", batch(hub, "readings", range(11, 15))).json()
    assert (late["stored"], late["duplicates"], late["acked_seq"]) == (0, 0, 14)
    assert register_pg.items(hub.hub_id, "readings") == []
