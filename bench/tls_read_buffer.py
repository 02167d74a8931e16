"""Does the register's smaller TLS read buffer (``server.TLS_READ_BUFFER``, 32 KiB where asyncio allocates 256 KiB per
connection) slow bulk ingest? Two registers on one PostgreSQL, one with each buffer, each as its own process; one
hub each POSTs rounds of 20 readings batches of 5,000 (random values, so the bodies are some 90 KB compressed, as a
catch-up's are), the two registers alternating round by round (and which goes first); printed per buffer: readings/s
and the register's CPU-seconds per 100,000 readings in each round, and their means.

Run: ``flock /tmp/kotihub-bench.lock .venv/bin/python bench/tls_read_buffer.py [--rounds 6]``. Not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from cloud_sync import protocol as p  # noqa: E402
from tests.support.postgres import free_port, start_cluster  # noqa: E402
from tests.support.register_fleet import Fleet  # noqa: E402

BUFFERS = (32 * 1024, 256 * 1024)
BATCHES, PER_BATCH = 20, 5_000


def serve(state: Path, db_url: str, port: int, buffer: int) -> subprocess.Popen[bytes]:
    """``kotihub-register serve`` with ``TLS_READ_BUFFER`` set to ``buffer`` before it starts."""
    code = (
        "import sys; import cloud_sync.register.server as s; s.TLS_READ_BUFFER = int(sys.argv[1]); "
        "from cloud_sync.register.cli import main; sys.argv = ['kotihub-register', *sys.argv[2:]]; main()"
    )
    args = ["serve", "--state", str(state), "--port", str(port), "--db", db_url]
    env = {**os.environ, "KOTIHUB_REGISTER_PUBLIC_URL": f"https://127.0.0.1:{port}"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(buffer), *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )


def wait_ready(url: str, ca: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ca.exists():
            s = requests.Session()
            s.trust_env, s.verify = False, str(ca)
            try:
                if s.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"the register at {url} did not start")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bodies(hub_id: str, first_seq: int, rng: random.Random) -> list[bytes]:
    out = []
    for k in range(BATCHES):
        base = first_seq + k * PER_BATCH
        items = []
        for j in range(PER_BATCH):
            ts = 1.79e9 + base + j + rng.random()
            body = {"device_id": f"zigbee:{j % 60}", "quantity": "temperature", "value": rng.uniform(-30, 40), "ts": ts}
            items.append(p.Item(seq=base + j, ts=ts, body=body))
        out.append(p.encode_batch(p.IngestBatch(hub_id=hub_id, lane="readings", items=items)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="kotihub-bench-tlsbuf-"))
    cluster = start_cluster()
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        db_url = cluster.url(cluster.create_database())
        state = tmp / "register"
        state.mkdir()
        ports = {b: free_port() for b in BUFFERS}
        for b in BUFFERS:  # one after the other: the first makes the CA both share
            procs[b] = serve(state, db_url, ports[b], b)
            wait_ready(f"https://127.0.0.1:{ports[b]}", state / "ca.crt")
        fleet = Fleet(state, db_url)
        hubs = {b: fleet.hub(f"https://127.0.0.1:{ports[b]}", i) for i, b in enumerate(BUFFERS)}
        rounds: dict[int, list[tuple[float, float]]] = {b: [] for b in BUFFERS}
        size = 0
        for r in range(args.rounds):
            for b in BUFFERS if r % 2 else tuple(reversed(BUFFERS)):
                hub = hubs[b]
                s = requests.Session()
                s.trust_env, s.verify, s.cert = False, str(hub.ca), (str(hub.cert), str(hub.key))
                batch = bodies(hub.hub_id, 1 + r * BATCHES * PER_BATCH, rng)
                size = len(batch[0])
                cpu0, t0 = cpu_s(procs[b].pid), time.perf_counter()
                for body in batch:
                    resp = s.post(
                        f"https://127.0.0.1:{ports[b]}/v1/ingest/readings", data=body, headers=p.INGEST_HEADERS
                    )
                    if resp.status_code != 200 or resp.json()["stored"] != PER_BATCH:
                        raise RuntimeError(f"batch not stored: {resp.status_code} {resp.text[:200]}")
                n = BATCHES * PER_BATCH
                rounds[b].append((n / (time.perf_counter() - t0), (cpu_s(procs[b].pid) - cpu0) * 100_000 / n))
                s.close()
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{BATCHES} batches of {PER_BATCH:,} readings per round, {size:,} bytes each (msgpack + zstd)")
    means = {}
    for b, rs in rounds.items():
        rate = sum(x for x, _ in rs) / len(rs)
        cpu = sum(c for _, c in rs) / len(rs)
        means[b] = (rate, cpu)
        print(
            f"TLS read buffer {b // 1024:>3} KiB: readings/s {[round(x) for x, _ in rs]}, register CPU-s per 100k"
            f" {[round(c, 3) for _, c in rs]}; means {rate:,.0f} readings/s, {cpu:.3f} CPU-s"
        )
    (r32, c32), (r256, c256) = means[BUFFERS[0]], means[BUFFERS[1]]
    print(f"32 KiB against 256 KiB: readings/s {r32 / r256:.2f}x, register CPU {c32 / c256:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
