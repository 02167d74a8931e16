"""What one smoke alarm costs PostgreSQL on the alarm listener's path, the pipelined transaction (alarm_txn.py) beside
the Python path it replaces, measured in the same run (issue 17, docs/scale.md "Runs J"):

* round trips and statements from the pool's checkout to its checkin, counted from libpq's trace of the protocol
  (``tests/support/pgtrips.py``), for a new alarm and for its resend;
* the time ``ingest.ingest_body`` takes for one alarm in this process (no HTTP, untraced), the two paths
  interleaved, first with PostgreSQL otherwise idle and then with ``--bulk`` connections ``COPY``ing 5,000-row
  batches into a copy of ``readings`` without pause (PostgreSQL's CPU taken by bulk backends, as under fleet load).

Run: ``flock /tmp/kotihub-bench.lock .venv/bin/python bench/alarm_roundtrips.py [--alarms 300] [--bulk 4]``. Not a
test: it prints figures; the machine's other load is not controlled (the load average is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.support.alarm_home import AlarmHome, make_home, open_registry, smoke  # noqa: E402
from tests.support.pgtrips import RoundTrips  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

PATHS = {"python (before)": False, "pipelined (now)": True}


def count(home: AlarmHome, seq: int) -> dict[str, tuple[int, int, int, int]]:
    """Per path: (round trips, statements) of a new alarm, then of its resend."""
    trips = RoundTrips(home.registry.urgent_engine)
    out = {}
    try:
        for name, pipelined in PATHS.items():
            home.send([smoke(seq)], pipelined=pipelined)
            new = trips.take()
            home.send([smoke(seq)], pipelined=pipelined)
            again = trips.take()
            out[name] = (new.round_trips, new.statements, again.round_trips, again.statements)
            seq += 1
    finally:
        trips.close()
    return out


def timed(home: AlarmHome, first_seq: int, n: int) -> dict[str, list[float]]:
    """Milliseconds per alarm, the two paths alternating (and which goes first alternating too)."""
    out: dict[str, list[float]] = {name: [] for name in PATHS}
    seq = first_seq
    order = list(PATHS.items())
    for i in range(n):
        for name, pipelined in order if i % 2 else reversed(order):
            t = time.perf_counter()
            home.send([smoke(seq)], pipelined=pipelined)
            out[name].append((time.perf_counter() - t) * 1000)
            seq += 1
    return out


def bulk_load(dsn: str, stop: threading.Event, copied: list[int]) -> None:
    """COPY 5,000-row batches into a copy of readings (its indexes too), one transaction each, until ``stop``."""
    hub = f"hub_bulk_{secrets.token_hex(6)}"  # a hub of its own per thread and phase
    with psycopg.connect(dsn) as conn:
        seq = 0
        while not stop.is_set():
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY bulk_readings (hub_id, seq, household_id, device_id, quantity, channel, value, ts,"
                    " received_at) FROM STDIN"
                ) as copy,
            ):
                for i in range(seq, seq + 5_000):
                    copy.write_row((hub, i, "hh_bulk", f"dev{i % 60}", "temperature", "", 21.5, float(i), 0.0))
            conn.commit()
            seq += 5_000
            copied[0] += 5_000


def loaded(home: AlarmHome, dsn: str, bulk: int, first_seq: int, n: int) -> tuple[dict[str, list[float]], float]:
    """:func:`timed` while ``bulk`` connections COPY without pause; returns the times and the rows/s copied."""
    stop, copied = threading.Event(), [0]
    threads = [threading.Thread(target=bulk_load, args=(dsn, stop, copied), daemon=True) for _ in range(bulk)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)  # let the COPYs get going (not a synchronisation: a warm-up)
        t0, c0 = time.monotonic(), copied[0]
        times = timed(home, first_seq, n)
        return times, (copied[0] - c0) / (time.monotonic() - t0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'path':<18} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, xs in times.items():
        p50, p99 = statistics.median(xs), percentile(xs, 0.99)
        print(f"{name:<18} {len(xs):>5} {p50:>8.2f} {p99:>8.2f} {statistics.fmean(xs):>8.2f}")
    old, new = times["python (before)"], times["pipelined (now)"]
    print(
        f"ratio now/before: p50 {statistics.median(new) / statistics.median(old):.2f}, "
        f"p99 {percentile(new, 0.99) / percentile(old, 0.99):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alarms", type=int, default=300, help="alarms per path and phase")
    ap.add_argument("--bulk", type=int, default=4, help="COPY connections in the loaded phase (0: none)")
    ap.add_argument(
        "--then",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting (ALTER SYSTEM, reloaded) for a second loaded phase after the first",
    )
    args = ap.parse_args()
    logging.getLogger("cloud_sync").setLevel(logging.ERROR)  # each smoke alarm opened is logged at WARNING
    print("uptime before:", os.getloadavg())
    cluster = start_cluster()
    state = Path(tempfile.mkdtemp(prefix="kotihub-alarm-rt-"))
    try:
        name = cluster.create_database()
        registry = open_registry(state / "register", cluster.url(name))
        try:
            home = make_home(registry)
            timed(home, 1_000_000, 20)  # warm: pools open, statements prepared (psycopg prepares after 5 uses)
            counts = count(home, 0)
            print("\nround trips and statements per alarm, checkout to checkin (listener's pool: no ping)")
            print(f"{'path':<18} {'trips':>6} {'stmts':>6} {'resend trips':>13} {'resend stmts':>13}")
            for path, (t, s, rt, rs) in counts.items():
                print(f"{path:<18} {t:>6} {s:>6} {rt:>13} {rs:>13}")
            old, new = counts["python (before)"][0], counts["pipelined (now)"][0]
            print(f"ratio now/before (round trips): {new / old:.2f}")
            report("one alarm, PostgreSQL otherwise idle", timed(home, 10_000, args.alarms))
            if args.bulk:
                dsn = cluster.admin_dsn(name)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("CREATE TABLE bulk_readings (LIKE readings INCLUDING ALL)")
                phases: list[tuple[str, list[str]]] = [("PostgreSQL's defaults", [])]
                if args.then:
                    phases.append((", ".join(args.then), args.then))
                for i, (what, settings) in enumerate(phases):
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        for setting in settings:
                            key, _, value = setting.partition("=")
                            conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
                        conn.execute("SELECT pg_reload_conf()")
                    times, rate = loaded(home, dsn, args.bulk, 100_000 * (i + 1), args.alarms)
                    title = f"one alarm, {args.bulk} bulk COPY connections beside it ({rate:,.0f} rows/s); {what}"
                    report(title, times)
        finally:
            registry.close()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print("\nuptime after:", os.getloadavg())


if __name__ == "__main__":
    main()
