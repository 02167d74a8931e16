"""What idle command long-polls cost the register and PostgreSQL: ``--hubs`` hubs (real mTLS clients) each holding
``GET /v1/commands?wait=N`` open, as every real hub does all day, and nothing else, for ``--duration`` seconds: N is
each side's hub default (``--wait-baseline`` 25, ``--wait-now`` 55; the same for both to compare the code alone).

Two registers in one run, each on a database of its own in one PostgreSQL 15 cluster: this tree's and the
baseline, the code at ``--baseline-rev`` (a git revision). Printed for each: register CPU and PostgreSQL CPU per hub
per minute and per answered long-poll, and PostgreSQL transactions per second (``pg_stat_database.xact_commit`` of
its database), with the ratio.

Baselines measured with it: ``d1f2d06~1`` (long-polls re-read the database every 2 s; this tree's read only when
woken while LISTEN is up, cloud_sync/register/wakeups.py) and ``faa23b4`` (the default: each answer cost a check of
the hub on a connection of its own, a read of ``households`` for live mode, and a re-read of ``commands`` at the
wait's end, each read in a transaction; this tree's is one checkout, the check and one read, no transaction).

Run: ``flock /tmp/kotihub-bench.lock .venv/bin/python bench/longpoll_idle.py [--hubs 1000] [--duration 60]``.
Not a test: it prints figures; the machine's other load is not controlled (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import psycopg  # noqa: E402
from fleet import Hub, enroll_hubs, postgres_cpu_s, tree_cpu_s  # noqa: E402
from register_proc import RegisterProcess  # noqa: E402

from tests.support.postgres import PostgresCluster, start_cluster  # noqa: E402

BASELINE_REV = "faa23b4"


async def hold(
    hubs: list[Hub], url: str, ca: str, wait: float, duration: float, snapshot: Callable[[], tuple[float, ...]]
) -> tuple[int, float, tuple[float, ...], tuple[float, ...]]:
    """Every hub connects (one ``wait=0`` request, its handshake), then long-polls; once every hub is connected the
    measured time starts (``snapshot()``) and lasts ``duration`` seconds plus the end of each hub's last long-poll.
    Each hub keeps its connection throughout, as a real one does, so no handshake falls in the measured time.
    Returns long-polls answered in it, its length, and the snapshots at its start and end."""
    connected = 0
    all_connected = asyncio.Event()
    answered = 0
    started: tuple[float, ...] = ()
    measuring = False

    async def one(hub: Hub) -> None:
        nonlocal answered, connected
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(hub.cert, hub.key)
        connector = aiohttp.TCPConnector(limit=1, ssl=ctx, local_addr=(hub.source, 0))
        timeout = aiohttp.ClientTimeout(total=wait + 60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            async with s.get(f"{url}/v1/commands", params={"wait": "0"}) as resp:
                await resp.read()
            connected += 1
            if connected == len(hubs):
                all_connected.set()
            await all_connected.wait()
            while time.monotonic() < end:
                async with s.get(f"{url}/v1/commands", params={"wait": f"{wait:g}"}) as resp:
                    await resp.read()
                    answered += measuring

    end = float("inf")
    hub_tasks = [asyncio.create_task(one(h)) for h in hubs]
    await all_connected.wait()
    started, t0, measuring = snapshot(), time.monotonic(), True
    end = t0 + duration
    await asyncio.gather(*hub_tasks)
    return answered, time.monotonic() - t0, started, snapshot()


def commits(cluster: PostgresCluster, dbname: str) -> int:
    with psycopg.connect(cluster.admin_dsn()) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
    return int(row[0]) if row else 0


def measure(
    label: str, tree: Path, cluster: PostgresCluster, hubs_n: int, duration: float, tmp: Path, wait: float
) -> dict[str, float]:
    dbname = cluster.create_database()
    url = cluster.url(dbname)
    state = tmp / label
    hub_dir = tmp / f"{label}-hubs"
    hub_dir.mkdir()
    hubs = enroll_hubs(state, url, hubs_n, hub_dir, 50)
    reg = RegisterProcess(state, "--db", url)
    # The register's code from ``tree``: PYTHONPATH first, and -P so that the working directory does not come first.
    reg.program = ["env", f"PYTHONPATH={tree}", sys.executable, "-P", "-m", "cloud_sync.register.cli"]
    reg.start()
    try:

        def snapshot() -> tuple[float, ...]:
            return tree_cpu_s(reg.pid), postgres_cpu_s(cluster), commits(cluster, dbname)

        answered, took, before, after = asyncio.run(hold(hubs, reg.url, str(reg.ca_file), wait, duration, snapshot))
        cpu, pg, tx = (b - a for a, b in zip(before, after, strict=True))
    finally:
        reg.stop()
    minutes = took / 60
    return {
        "register_ms_per_hub_min": cpu * 1000 / hubs_n / minutes,
        "postgres_ms_per_hub_min": pg * 1000 / hubs_n / minutes,
        "tx_per_s": tx / took,
        "answered_per_hub_min": answered / hubs_n / minutes,
        "register_ms_per_answer": cpu * 1000 / max(answered, 1),
        "postgres_ms_per_answer": pg * 1000 / max(answered, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hubs", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--wait-baseline", type=float, default=25.0, help="the baseline's hubs' wait (its hub default)")
    ap.add_argument("--wait-now", type=float, default=55.0, help="this tree's hubs' wait (the hub default now)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        base_tree = tmp / "baseline"
        add = ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base_tree), args.baseline_rev]
        subprocess.run(add, check=True)
        cluster = start_cluster()
        try:
            results: dict[str, dict[str, Any]] = {}
            for label, tree, wait in (("baseline", base_tree, args.wait_baseline), ("now", ROOT, args.wait_now)):
                results[label] = measure(label, tree, cluster, args.hubs, args.duration, tmp, wait)
        finally:
            cluster.stop()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
    print(
        f"{args.hubs} hubs, each holding a command long-poll (baseline {args.wait_baseline:g} s, now"
        f" {args.wait_now:g} s) and nothing else; {args.duration:.0f} s measured"
    )
    print(f"{'':28}{'baseline (' + args.baseline_rev + ')':>26}{'now':>12}{'ratio':>8}")
    for key, name in (
        ("register_ms_per_hub_min", "register CPU ms/hub/min"),
        ("postgres_ms_per_hub_min", "PostgreSQL CPU ms/hub/min"),
        ("tx_per_s", "PostgreSQL transactions/s"),
        ("answered_per_hub_min", "long-polls answered/hub/min"),
        ("register_ms_per_answer", "register CPU ms/answer"),
        ("postgres_ms_per_answer", "PostgreSQL CPU ms/answer"),
    ):
        b, n = results["baseline"][key], results["now"][key]
        print(f"{name:28}{b:26.2f}{n:12.2f}{(n / b if b else float('nan')):8.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
