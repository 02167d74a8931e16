"""What matching a request to its route costs the register, for the requests hubs send all day.

FastAPI 0.165 matches an included router lazily: each request walks the routers in the order they were included,
and each router checks its routes' version and its routes before the next is tried. The register includes the
hubs' ingest and command routers first (cloud_sync/register/app.py); the baseline is the same app with those two
moved back to where they were before (sixth and eighth), built in the same run. Printed: microseconds per request
for each path, both orders, and the ratio; and a path no route matches (a stranger's probe), which walks them all.

Run: ``.venv/bin/python bench/route_match.py [--n 20000]``. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.routing import Match  # noqa: E402

from cloud_sync.register.app import create_app  # noqa: E402
from cloud_sync.register.settings import Settings  # noqa: E402

PATHS = [
    ("POST", "/v1/ingest/readings"),
    ("GET", "/v1/commands"),
    ("PUT", "/v1/heartbeat"),
    ("GET", "/app/home"),
    ("GET", "/v1/no-such-thing"),
]


def serves(route: Any, path: str) -> bool:
    router = getattr(route, "original_router", None)
    return router is not None and any(getattr(r, "path", "") == path for r in router.routes)


def old_order(routes: list[Any]) -> list[Any]:
    """The order before: the ingest router sixth and the command router eighth among the included routers."""
    ingest = next(r for r in routes if serves(r, "/v1/ingest/{lane}"))
    commands = next(r for r in routes if serves(r, "/v1/commands"))
    rest = [r for r in routes if r is not ingest and r is not commands]
    first = 1  # the OpenAPI document's own route comes before every included router
    rest.insert(first + 5, ingest)
    rest.insert(first + 7, commands)
    return rest


def per_request_us(routes: list[Any], method: str, path: str, n: int) -> float:
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": [], "query_string": b""}
    started = time.perf_counter()
    for _ in range(n):
        for route in routes:
            if route.matches(scope)[0] == Match.FULL:
                break
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(state_dir=Path(tmp)))
        now = list(app.router.routes)
        before = old_order(now)
        print(f"{'request':32}{'before (us)':>12}{'now (us)':>10}{'ratio':>8}")
        for method, path in PATHS:
            # Alternated, so that the machine's other load falls on both alike; the better of two rounds each.
            rounds = [
                (per_request_us(before, method, path, args.n // 4), per_request_us(now, method, path, args.n // 4))
                for _ in range(2)
            ]
            b, c = min(r[0] for r in rounds), min(r[1] for r in rounds)
            print(f"{method + ' ' + path:32}{b:12.1f}{c:10.1f}{c / b:8.2f}")


if __name__ == "__main__":
    main()
