"""What keeping the hub's alarm connection open saves a smoke alarm, and what the pings cost the register (issue 17,
docs/scale.md "The alarm connection kept open"), measured in the same run:

* **latency**: the hub's own alarm client (``cloud_sync.uplink.alarmroute.AlarmClient``) sends one smoke alarm and
  waits for its ack, alternately over a new connection (what a register that closed the idle one after 35 s left:
  TCP connect, TLS handshake with certificates both ways, then the request) and over the connection its pings kept
  open, through a link of a given round-trip time (a delay line on loopback, ``tests/support/tcpproxy.py``:
  ``--rtt`` milliseconds; 0 is loopback itself);
* **register CPU** (its process's utime + stime, from ``/proc``) per ping on a kept connection, and per new
  connection carrying one ping (the handshake's cost); and the register's resident memory per kept connection.

The register is ``kotihub-register serve`` (one process) on PostgreSQL, started here.

Run: ``flock /tmp/kotihub-bench.lock .venv/bin/python bench/alarm_keepalive.py [--alarms 60] [--rtt 0 20 60]``.
Not a test: it prints figures; the machine's other load is not controlled (the load average is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud_sync.uplink.alarmroute import AlarmClient  # noqa: E402
from gateway.store import OutboxItem  # noqa: E402
from tests.support.alarm_client import alarm_client  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402
from tests.support.register_fleet import Fleet  # noqa: E402
from tests.support.register_proc import RegisterProcess  # noqa: E402
from tests.support.tcpproxy import fault_proxy  # noqa: E402

T0 = 1_790_000_000.0
HOLD_MAX = 200
"""Connections held at once from this one address (the register allows 256 per address)."""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def smoke(seq: int) -> list[OutboxItem]:
    body = {"device_id": "mqtt:smoke1", "kind": "smoke", "state": "smoke" if seq % 2 else "clear", "ts": T0 + seq}
    return [OutboxItem(seq=seq, ts=T0 + seq, body=body)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(
    url: str, state_dir: Path, hub_id: str, rtt_ms: float, n: int, seq: int
) -> tuple[dict[str, list[float]], int]:
    """Milliseconds per alarm, over a new connection and over a kept one, alternating (which goes first too)."""
    out: dict[str, list[float]] = {"new connection": [], "kept connection": []}
    with fault_proxy(int(url.rsplit(":", 1)[1])) as proxy:
        proxy.latency = rtt_ms / 2000
        client = alarm_client(proxy.url, state_dir)
        try:
            for i in range(n):
                for mode in ("new connection", "kept connection") if i % 2 else ("kept connection", "new connection"):
                    if mode == "new connection":
                        client.close()  # as the register did after 35 s idle, before pings
                    else:
                        client.ping()  # what the lane's pings do while idle: the connection is open
                    seq += 1
                    started = time.perf_counter()
                    ack = client.ingest(hub_id, "alarm", smoke(seq))
                    took = (time.perf_counter() - started) * 1000
                    if ack.acked_seq != seq or ack.stored != 1:
                        raise RuntimeError(f"alarm not stored: {ack}")
                    out[mode].append(took)
            if client.reopened:
                raise RuntimeError(f"{client.reopened} alarms went again over a new connection")
        finally:
            client.close()
    return out, seq


def register_costs(url: str, state_dir: Path, pid: int, n: int) -> dict[str, float]:
    """Register CPU ms per ping on a kept connection and per new connection with one ping; RSS bytes per kept one."""
    client = alarm_client(url, state_dir)
    client.ping()
    before = cpu_s(pid)
    for _ in range(5 * n):  # CPU time is counted in ticks (10 ms): enough pings to count many
        client.ping()
    per_ping = (cpu_s(pid) - before) * 1000 / (5 * n)
    before = cpu_s(pid)
    for _ in range(n):
        client.close()
        client.ping()
    per_connection = (cpu_s(pid) - before) * 1000 / n
    client.close()
    held: list[AlarmClient] = []
    rss0 = rss_bytes(pid)
    hold = min(n, HOLD_MAX)
    try:
        for _ in range(hold):
            kept = alarm_client(url, state_dir)
            kept.ping()
            held.append(kept)
        per_kept = (rss_bytes(pid) - rss0) / hold
    finally:
        for kept in held:
            kept.close()
    if client.ping_failures or any(k.ping_failures for k in held):
        raise RuntimeError("a ping failed")
    return {"ping_ms": per_ping, "connection_ms": per_connection, "kept_bytes": per_kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alarms", type=int, default=60, help="alarms per mode and round-trip time (default 60)")
    parser.add_argument("--rtt", type=float, nargs="+", default=[0.0, 20.0, 60.0], help="round-trip times, ms")
    parser.add_argument("--connections", type=int, default=300, help="connections for the register's costs")
    parser.add_argument("--every", type=float, default=120.0, help="the hubs' ping interval, s (default 120)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="kotihub-bench-keepalive-") as tmp:
        root = Path(tmp)
        cluster = start_cluster()
        try:
            db_url = cluster.url(cluster.create_database())
            state = root / "register"
            state.mkdir()
            proc = RegisterProcess(state, {}, db_url=db_url)
            proc.start()
            try:
                assert proc.proc is not None
                hub = Fleet(state, db_url).hub(proc.url, 1)
                seq = 0
                print(f"\none smoke alarm, hub to ack, {args.alarms} per mode (the hub's AlarmClient, TLS 1.3, mTLS)")
                print(
                    f"{'RTT ms':>7} | {'new connection p50 / p99':>25} | {'kept connection p50 / p99':>26}"
                    " | ratio p50 / p99"
                )
                for rtt in args.rtt:
                    times, seq = latency(proc.url, hub.state_dir, hub.hub_id, rtt, args.alarms, seq)
                    new, kept = times["new connection"], times["kept connection"]
                    n50, n99, k50, k99 = pct(new, 0.5), pct(new, 0.99), pct(kept, 0.5), pct(kept, 0.99)
                    print(
                        f"{rtt:>7.0f} | {n50:>11.1f} / {n99:>11.1f} | {k50:>12.1f} / {k99:>11.1f} |"
                        f" {k50 / n50:.2f} / {k99 / n99:.2f}"
                        f"   (means {statistics.mean(new):.1f} / {statistics.mean(kept):.1f})"
                    )
                costs = register_costs(proc.url, hub.state_dir, proc.proc.pid, args.connections)
            finally:
                proc.stop()
        finally:
            cluster.stop()
    ping_ms, conn_ms = costs["ping_ms"], costs["connection_ms"]
    print(f"\nregister CPU per ping on a kept connection: {ping_ms:.3f} ms")
    print(
        f"register CPU per new connection with one ping (handshake included): {conn_ms:.3f} ms"
        f"  (a ping costs {ping_ms / conn_ms:.2f} of a new connection)"
    )
    print(f"register memory per kept connection: {costs['kept_bytes'] / 1024:.1f} KiB")
    for homes in (50_000, 500_000):
        cores = homes / args.every * ping_ms / 1000
        memory = homes * costs["kept_bytes"] / 2**30
        print(
            f"{homes:>8,} homes pinging every {args.every:.0f} s: {homes / args.every:,.0f} pings/s,"
            f" {cores:.2f} register cores,"
            f" {memory:.1f} GiB for their kept connections"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
