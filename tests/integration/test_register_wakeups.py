"""Command wake-ups on PostgreSQL (cloud_sync/register/wakeups.py): by hub, at commit, surviving the loss of the
LISTEN connection; and the server certificate pair shared by two register processes in one state directory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import Engine, event, insert, text

from cloud_sync.register import db, workers
from cloud_sync.register.settings import MIN_BODY_BUDGET, Settings
from cloud_sync.register.wakeups import Wakeups
from tests.integration.test_register_certs import _served_cert
from tests.support.register import RunningRegister, start_register


def _queue(engine: Engine, hub_id: str, n: int, household: str = "hh") -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(db.commands).values(
                id=f"c{n}", household_id=household, hub_id=hub_id, kind="restrict", args={}, issued_at=0.0,
                issued_by="t",
            )
        )  # fmt: skip


async def _until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_wakeups_by_hub_at_commit_and_after_the_listen_connection_is_lost(postgres_url: str) -> None:
    engine = db.open_engine(postgres_url)
    w = Wakeups(engine, retry_s=0.2)
    try:
        await w.start()
        assert w.listening.is_set() and w.crosses_processes
        h1 = asyncio.create_task(w.wait(30, "hub_1"))
        h2 = asyncio.create_task(w.wait(30, "hub_2"))
        await asyncio.sleep(0)  # both registered before the notification can arrive
        t0 = time.monotonic()
        await asyncio.to_thread(_queue, engine, "hub_1", 1)
        await asyncio.wait_for(h1, 5)
        assert time.monotonic() - t0 < 1.0
        assert not h2.done()  # another hub's command does not wake it

        # The LISTEN session dies (a PostgreSQL restart, a network cut): it is re-opened, and everyone waiting
        # re-reads at once in case a command was queued meanwhile.
        with engine.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN kotihub_commands%' AND pid <> pg_backend_pid()"
                    " AND datname = current_database()"
                )
            ).all()
        assert killed == [(True,)]
        await asyncio.wait_for(h2, 10)
        await _until(w.listening.is_set, "LISTEN again")
        h1 = asyncio.create_task(w.wait(30, "hub_1"))
        await asyncio.sleep(0)
        t0 = time.monotonic()
        await asyncio.to_thread(_queue, engine, "hub_1", 2)
        await asyncio.wait_for(h1, 5)
        assert time.monotonic() - t0 < 1.0

        # A stop releases every waiter at once.
        waiting = asyncio.create_task(w.wait(30, "hub_3"))
        await asyncio.sleep(0)
        w.close()
        await asyncio.wait_for(waiting, 2)
        assert w.closing
    finally:
        w.close()
        engine.dispose()


async def test_a_rolled_back_command_wakes_nobody(postgres_url: str) -> None:
    engine = db.open_engine(postgres_url)
    w = Wakeups(engine, retry_s=0.2)
    try:
        await w.start()
        waiter = asyncio.create_task(w.wait(1.5, "hub_1"))
        await asyncio.sleep(0)

        def queue_and_roll_back() -> None:
            with engine.connect() as conn:
                conn.execute(
                    insert(db.commands).values(
                        id="c1", household_id="hh", hub_id="hub_1", kind="restrict", args={}, issued_at=0, issued_by="t"
                    )
                )
                conn.rollback()

        t0 = time.monotonic()
        await asyncio.to_thread(queue_and_roll_back)
        await waiter
        assert time.monotonic() - t0 >= 1.0  # ran to its timeout
    finally:
        w.close()
        engine.dispose()


def test_sqlite_wakeups_stay_in_process(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path}/r.db")
    try:
        w = Wakeups(engine)
        assert not w.crosses_processes
        asyncio.run(w.start())
        assert not w.listening.is_set()
    finally:
        engine.dispose()


def test_limits_are_divided_among_workers(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, body_budget_bytes=4 * MIN_BODY_BUDGET, auth_failure_burst=20, enroll_burst=10)
    one = workers.per_worker(s, 3)
    assert one.auth_failure_burst == 7 and one.enroll_burst == 4
    assert one.max_connections_per_source == 86 and one.max_anonymous_connections == 683
    assert one.body_budget_bytes == math.ceil(4 * MIN_BODY_BUDGET / 3)
    # Never below one ingest request at its limits, however many workers.
    assert workers.per_worker(s, 64).body_budget_bytes == MIN_BODY_BUDGET


def test_two_processes_share_the_server_certificate_and_both_serve_a_renewal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a = start_register(state, server_cert_check_s=0.2)
    b = start_register(state, server_cert_check_s=0.2)
    try:
        first = _served_cert(a)
        assert _served_cert(b).serial_number == first.serial_number  # b reused a's pair rather than issuing one
        assert a._server is not None and a._server.loop is not None
        fut = asyncio.run_coroutine_threadsafe(a._server.rotate_server_cert(), a._server.loop)
        renewed: x509.Certificate = fut.result(30)
        assert renewed.serial_number != first.serial_number
        assert _served_cert(a).serial_number == renewed.serial_number
        deadline = time.monotonic() + 15
        while _served_cert(b).serial_number != renewed.serial_number:  # b loads it at its next check
            assert time.monotonic() < deadline, "b never served the renewed certificate"
            time.sleep(0.05)
    finally:
        a.close()
        b.close()


def test_an_idle_long_poll_reads_the_database_once_while_listen_is_up(register_any: RunningRegister) -> None:
    """On PostgreSQL with LISTEN in place an idle hub's long-poll reads ``commands`` once, at its start, not every
    ``command_poll_interval_s`` (2 s) nor at its end: at 50,000 hubs that was 25,000 reads a second for nothing. A
    command queued by another process (its own engine, as the CLI or another worker) still answers the long-poll at
    once. On SQLite, where nothing crosses processes, it re-reads as before."""
    reg = register_any
    hub = reg.enroll()
    reads: list[float] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM commands" in statement:
            reads.append(time.monotonic())

    event.listen(reg.reg.engine, "before_cursor_execute", count)
    try:
        started = time.monotonic()
        resp = hub.session().get(f"{reg.url}/v1/commands", params={"wait": 5, "live": 0}, timeout=30)
        assert resp.status_code == 200 and resp.json() == [] and time.monotonic() - started >= 4.9
        postgres = reg.reg.engine.dialect.name == "postgresql"
        if postgres:
            assert len(reads) == 1, reads  # when it began; not woken, it has nothing new to read at its end
        else:
            assert len(reads) >= 3, reads  # at 0, 2, 4 and 5 s (one fewer if a read ran late under load)
        # Queued by another process's engine while the hub waits: answered long before the wait's end.
        other = db.open_engine(reg.settings.database_url)
        try:
            before = len(reads)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    hub.session().get, f"{reg.url}/v1/commands", params={"wait": 20, "live": 0}, timeout=40
                )
                deadline = time.monotonic() + 30
                while len(reads) == before:  # until the long-poll's first read
                    assert time.monotonic() < deadline, "the long-poll never read the database"
                    time.sleep(0.02)
                queued = time.monotonic()
                _queue(other, hub.hub_id, 1, household=hub.household_id)
                answer = waiting.result(timeout=40)
            assert [c["id"] for c in answer.json()] == ["c1"]
            assert time.monotonic() - queued < (5 if postgres else 10)
        finally:
            other.dispose()
    finally:
        event.remove(reg.reg.engine, "before_cursor_execute", count)


def test_a_long_poll_hears_a_command_queued_while_listen_was_down(register_pg: RunningRegister) -> None:
    """The long-poll skips its read at the end of an unwoken wait only while LISTEN stayed up: when the register's
    LISTEN connection dies mid-wait (a PostgreSQL restart, a network cut), a command queued while it is down is
    still answered within seconds (the waiters are woken, re-read every ``command_poll_interval_s`` meanwhile and
    again when LISTEN is back), not at the end of the 40 s long-poll."""
    reg = register_pg
    hub = reg.enroll()
    notifier = reg.app.state.notifier
    assert notifier.listening.is_set()
    epoch = notifier.epoch
    reads: list[float] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM commands" in statement:
            reads.append(time.monotonic())

    event.listen(reg.reg.engine, "before_cursor_execute", count)
    other = db.open_engine(reg.settings.database_url)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                hub.session().get, f"{reg.url}/v1/commands", params={"wait": 40, "live": 0}, timeout=60
            )
            deadline = time.monotonic() + 30
            while not reads:
                assert time.monotonic() < deadline, "the long-poll never read the database"
                time.sleep(0.02)
            with other.begin() as conn:
                killed = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN kotihub_%'"
                        " AND datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            assert killed == [(True,)]
            while notifier.epoch == epoch:  # the listener saw its connection go
                assert time.monotonic() < deadline + 30, "the listener never noticed"
                time.sleep(0.02)
            queued = time.monotonic()
            _queue(other, hub.hub_id, 1, household=hub.household_id)
            answer = waiting.result(timeout=60)
        assert [c["id"] for c in answer.json()] == ["c1"]
        assert time.monotonic() - queued < 10
    finally:
        event.remove(reg.reg.engine, "before_cursor_execute", count)
        other.dispose()
