"""Hostile clients for the register's connection limits: idle TLS connections without a client certificate, raw
TCP connections that never start the handshake, and a hub's alarm lane timed while they are held.

Each source address is a different loopback address (127.0.<i>.<j>), as a flood from many machines would be;
Linux routes all of 127.0.0.0/8 to lo.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from cloud_sync import protocol as p


def source(i: int) -> str:
    return f"127.0.{10 + i // 250}.{1 + i % 250}"


class IdleFlood:
    """Holds ``tls`` idle TLS connections (handshake done, no certificate, no request) spread over ``sources``
    addresses, and ``raw`` TCP connections that never send a byte, from a thread of its own until closed. With
    ``reconnect`` every connection the register drops is opened again at once, as a determined attacker would."""

    def __init__(
        self, port: int, ca_file: Path, *, tls: int, raw: int = 0, sources: int = 1, reconnect: bool = False
    ) -> None:
        self.port, self.ca_file = port, ca_file
        self.tls, self.raw, self.sources, self.reconnect = tls, raw, sources, reconnect
        self.opened = 0
        self.failed = 0
        self.live = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="flood", daemon=True)

    def __enter__(self) -> IdleFlood:
        self._thread.start()
        if not self._ready.wait(300):
            raise RuntimeError("the flood did not open its connections within 300 s")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        gate = asyncio.Semaphore(64)
        total = self.tls + self.raw
        first_round = [0]

        async def slot(i: int, tls: bool) -> None:
            while True:
                async with gate:
                    try:
                        reader, writer = await asyncio.open_connection(
                            "127.0.0.1",
                            self.port,
                            ssl=ctx if tls else None,
                            server_hostname="127.0.0.1" if tls else None,
                            local_addr=(source(i % self.sources), 0),
                        )
                    except (OSError, ssl.SSLError):
                        reader = None
                        self.failed += 1
                if reader is not None:
                    self.opened += 1
                    self.live += 1
                if first_round[0] < total:
                    first_round[0] += 1
                    if first_round[0] == total:
                        self._ready.set()
                if reader is None:
                    return
                try:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await reader.read(1)  # returns when the register closes the connection
                finally:
                    self.live -= 1
                    writer.transport.abort()
                if not self.reconnect:
                    return

        tasks = [asyncio.create_task(slot(i, True)) for i in range(self.tls)]
        tasks += [asyncio.create_task(slot(i, False)) for i in range(self.raw)]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def still_open(self) -> int:
        """How many of the connections are open now, as far as the flood has seen."""
        assert self._loop is not None

        async def count() -> int:
            return self.live

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(10)


def alarm_batch(hub_id: str, seq: int) -> bytes:
    body = {"device_id": "mqtt:smoke1", "kind": "smoke", "state": "smoke", "ts": 1_790_000_000.0 + seq, "attrs": {}}
    batch = p.IngestBatch(hub_id=hub_id, lane="alarm", items=[p.Item(seq=seq, ts=1_790_000_000.0 + seq, body=body)])
    return p.encode_batch(batch)


def alarm_latencies(url: str, session: requests.Session, hub_id: str, seqs: range) -> list[float]:
    """Seconds per alarm batch, each sent and acknowledged on the hub's kept-alive connection; raises on any
    refusal."""
    headers = {"Content-Type": p.MSGPACK_CONTENT_TYPE, "Content-Encoding": p.ZSTD_ENCODING}
    out = []
    for seq in seqs:
        data = alarm_batch(hub_id, seq)
        t0 = time.perf_counter()
        r = session.post(f"{url}/v1/ingest/alarm", data=data, headers=headers, timeout=30)
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
    return out


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextlib.contextmanager
def raw_connection(port: int, src: str = "127.0.0.1") -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(src, 0))
    try:
        yield s
    finally:
        s.close()


def closed_by_peer(s: socket.socket | ssl.SSLSocket, within: float) -> bool:
    """Whether the peer closes ``s`` within ``within`` seconds (a blocking read with a timeout, no sleeping)."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True
