"""In the register too, the alarm lane never queues behind bulk: with every bulk ingest stuck in the database, or every
connection of the process's pool taken, a smoke alarm is still checked and committed (real PostgreSQL, the register
over mTLS)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests

from cloud_sync.register.lanegate import SHARED_RESERVE
from tests.integration.test_register import INGEST_HEADERS, batch, event
from tests.support.register import RunningRegister

STUCK = 30


def _waiting_on_locks(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_alarm_is_committed_while_bulk_ingest_holds_all_it_may(register_pg: RunningRegister) -> None:
    reg = register_pg
    hub = reg.enroll()
    url = str(reg.reg.engine.url.render_as_string(hide_password=False)).replace("postgresql+psycopg", "postgresql")
    limit = min(reg.settings.db_pool_size - SHARED_RESERVE, reg.settings.bulk_ingest_limit)
    assert limit == 2  # the default (Settings.bulk_ingest_limit): fewer than the pool would allow
    sessions = [hub.session() for _ in range(STUCK)]

    def send(i: int) -> requests.Response:
        body = batch(hub, "readings", range(i * 10, i * 10 + 10))
        return sessions[i].post(f"{reg.url}/v1/ingest/readings", data=body, headers=INGEST_HEADERS, timeout=120)

    with psycopg.connect(url) as holder, ThreadPoolExecutor(STUCK) as pool:
        holder.execute("LOCK TABLE readings IN EXCLUSIVE MODE")  # every reading insert now waits (a long migration)
        bulk = [pool.submit(send, i) for i in range(STUCK)]
        deadline = time.monotonic() + 60
        while _waiting_on_locks(url) < limit and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_locks(url) == limit  # bulk took what it may, and no more
        started = time.monotonic()
        r = hub.session().post(
            f"{reg.url}/v1/ingest/alarm", data=batch(hub, "alarm", range(1), event), headers=INGEST_HEADERS, timeout=20
        )
        took = time.monotonic() - started
        assert r.status_code == 200 and r.json()["stored"] == 1
        assert took < 10  # generous: the point is it did not wait for the lock (held until below)
        assert not any(f.done() for f in bulk)
        holder.rollback()
        acks = [f.result() for f in bulk]
    assert all(a.status_code == 200 and a.json()["stored"] == 10 for a in acks)
    assert len(reg.items(hub.hub_id, "readings")) == STUCK * 10


def test_an_alarm_needs_no_thread_or_connection_that_bulk_or_other_routes_hold(register_pg: RunningRegister) -> None:
    """The main pool entirely taken (here by the test; under load by bulk batches and the other routes) and more bulk
    batches in flight than the shared thread pool has threads: the alarm's hub check and commit use the alarm lane's
    own threads and connections, so its ack comes before any bulk ack."""
    reg = register_pg
    hub = reg.enroll()
    burst = 48  # more than anyio's 40 shared threads
    sessions = [hub.session() for _ in range(burst)]
    alarm_session = hub.session()
    # Warm the alarm connection and the hub's certificate check, so what is timed below is only the alarm.
    r = alarm_session.post(
        f"{reg.url}/v1/ingest/alarm", data=batch(hub, "alarm", range(0), event), headers=INGEST_HEADERS, timeout=20
    )
    assert r.status_code == 200

    def send(i: int) -> requests.Response:
        body = batch(hub, "readings", range(i * 10, i * 10 + 10))
        return sessions[i].post(f"{reg.url}/v1/ingest/readings", data=body, headers=INGEST_HEADERS, timeout=120)

    engine = reg.reg.engine
    held = [engine.connect() for _ in range(reg.settings.db_pool_size + reg.settings.db_max_overflow)]
    try:
        with ThreadPoolExecutor(burst) as pool:
            bulk = [pool.submit(send, i) for i in range(burst)]
            r = alarm_session.post(
                f"{reg.url}/v1/ingest/alarm",
                data=batch(hub, "alarm", range(1), event),
                headers=INGEST_HEADERS,
                timeout=20,
            )
            assert r.status_code == 200 and r.json()["stored"] == 1
            assert not any(f.done() for f in bulk)  # every bulk batch still waits for the pool the test holds
            for conn in held:
                conn.close()
            held = []
            acks = [f.result() for f in bulk]
    finally:
        for conn in held:
            conn.close()
    assert all(a.status_code == 200 and a.json()["stored"] == 10 for a in acks)
    assert len(reg.items(hub.hub_id, "readings")) == burst * 10
    assert [seq for seq, _ in reg.items(hub.hub_id, "alarm")] == [0]
