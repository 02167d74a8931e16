"""Register ingest: readings per second end to end over TLS on loopback (encode excluded, HTTP + decode + commit in).

Run: ``.venv/bin/python bench/register_ingest.py [--db postgresql+psycopg://…] [--batches 20] [--batch-size 20000]``.
Without ``--db`` the register uses SQLite in a temporary directory. Not a test: it prints figures. Also sends
the whole run a second time to show the cost of an all-duplicates resend (what a hub does after a lost ack).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.enroll import enroll  # noqa: E402
from cloud_sync.register.registry import Registry  # noqa: E402
from cloud_sync.register.server import ReadyServer, build_config  # noqa: E402
from cloud_sync.register.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--port", type=int, default=18443)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(state_dir=Path(tmp) / "register", db_url=args.db)
        registry = Registry(settings)
        server = ReadyServer(build_config(settings, port=args.port, registry=registry, graceful_s=1))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        if not server.ready.wait(30):
            raise SystemExit("register did not start")
        try:
            url = f"https://127.0.0.1:{args.port}"
            household = registry.create_household("bench", actor="bench")
            token = registry.create_enroll_token(household, actor="bench")
            hub = enroll(url, token, Path(tmp) / "hub", ca_file=settings.state_dir / "ca.crt")
            session = requests.Session()
            session.trust_env = False
            session.verify = str(Path(tmp) / "hub" / "register-ca.crt")
            session.cert = (str(Path(tmp) / "hub" / "hub.crt"), str(Path(tmp) / "hub" / "hub.key"))
            n = args.batch_size
            bodies = [
                p.encode_batch(
                    p.IngestBatch(
                        hub_id=hub.hub_id,
                        lane="readings",
                        items=[
                            p.Item(
                                seq=k * n + i,
                                ts=1.76e9 + i,
                                body={
                                    "device_id": f"mqtt:{i % 64:04x}",
                                    "quantity": "temperature",
                                    "value": 20 + (i % 100) / 10,
                                    "ts": 1.76e9 + i,
                                },
                            )
                            for i in range(n)
                        ],
                    )
                )
                for k in range(args.batches)
            ]
            total = n * args.batches
            print(f"database: {registry.engine.dialect.name}; {args.batches} batches of {n} readings")
            print(f"compressed size: {sum(map(len, bodies)) / total:.1f} bytes/reading")
            for label in ("new", "resend (all duplicates)"):
                start = time.perf_counter()
                for body in bodies:
                    r = session.post(f"{url}/v1/ingest/readings", data=body, headers=p.INGEST_HEADERS, timeout=60)
                    r.raise_for_status()
                elapsed = time.perf_counter() - start
                print(f"{label:>24}: {total / elapsed:10,.0f} readings/s  ({elapsed:.2f} s)  last ack {r.json()}")
        finally:
            server.should_exit = True
            thread.join(30)
            registry.close()


if __name__ == "__main__":
    main()
