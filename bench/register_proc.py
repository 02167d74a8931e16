"""Helpers for the uplink benchmarks (not a benchmark itself): the register as its own process, enrolled hubs.

The register runs as ``kotihub-register serve`` in a subprocess (``python -m cloud_sync.register.cli``), so it does
not share a GIL with the uplink under test, as in production where it runs on another machine.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cloud_sync.enroll import enroll
from gateway.store import Store
from kotihub_tools.broker import free_port

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a whole process (all threads), in seconds, from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class RegisterProcess:
    """``kotihub-register serve`` on a free 127.0.0.1 port with SQLite (the default) in ``state_dir``."""

    def __init__(self, state_dir: Path, *serve_args: str) -> None:
        self.state_dir = state_dir
        self.serve_args = serve_args
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        # How to run ``kotihub-register`` (a diagnostic may substitute an instrumented wrapper around its main()).
        self.program = [sys.executable, "-m", "cloud_sync.register.cli"]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [*self.program, "--state", str(self.state_dir), "serve"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), *self.serve_args],
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()

        def watch(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.lines.append(line)
                if "register listening" in line:
                    ready.set()

        threading.Thread(target=watch, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("the register did not start:\n" + "".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "cloud_sync.register.cli", "--state", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()

    def enroll(self, hub_dir: Path) -> str:
        """A new household and a hub enrolled in it over HTTPS (the register must be running); returns the hub id."""
        household = self.cli("household", "create", "Benchikoti")
        token = self.cli("enroll-token", "--household", household)
        return enroll(self.url, token, hub_dir, ca_file=self.ca_file).hub_id

    def count(self, hub_id: str, table: str = "readings", lane: str | None = None) -> int:
        """Rows the register holds for ``hub_id`` (read from its SQLite file directly)."""
        with sqlite3.connect(f"file:{self.state_dir / 'register.db'}?mode=ro", uri=True) as conn:
            sql = f"SELECT count(*) FROM {table} WHERE hub_id = ?"
            params: Sequence[str] = (hub_id,)
            if lane is not None:
                sql += " AND lane = ?"
                params = (hub_id, lane)
            return int(conn.execute(sql, params).fetchone()[0])


async def fill_store(store: Store, readings: Sequence[object], chunk: int = 50) -> float:
    """Submits ``readings`` as a driver would (``chunk`` per call, with back-pressure); returns seconds taken."""
    import asyncio

    start = time.perf_counter()
    futures = []
    for i in range(0, len(readings), chunk):
        await store.wait_for_room()
        futures.append(store.submit_readings(readings[i : i + chunk]))  # type: ignore[arg-type]
    await asyncio.gather(*futures)
    return time.perf_counter() - start
