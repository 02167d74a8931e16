"""A TCP proxy on 127.0.0.1 that injects network faults between the hub and the register.

TLS stays end to end (the proxy only moves bytes), so mTLS is exercised for real. Faults:
``cut_replies`` — the next N replies are dropped and the connection closed: the register has committed and
answered, the hub never hears it (an ambiguous acknowledgement). A reply is server→client data on a connection that
has already carried ``request_bytes`` from the client, which the TLS handshake alone does not reach, so handshakes
pass and the cut lands on the answer to a real request; ``delay`` — every chunk is held
back; ``latency`` — every chunk arrives that many seconds after it was sent, both ways, and a new connection's
first bytes a round trip later (its TCP handshake): a long link, as a delay line (chunks in flight together);
``down`` — new connections are refused (closed at once) and existing ones are cut; :meth:`FaultProxy.stall` —
the connections open now go silent both ways without closing (a NAT that forgot them), new ones pass. ``opened`` and
``open`` count client connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.cut_replies = 0
        self.cut_count = 0
        self.request_bytes = 6000
        self.delay = 0.0
        self.latency = 0.0
        self.down = False
        self.opened = 0
        self.open = 0
        self._stalled: set[int] = set()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        # Stopped: end every connection's task and close the loop here, on its own thread. A stopped loop left
        # unclosed with its tasks pending is destroyed later by the garbage collector, in whichever test runs then.
        self._server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        def shutdown() -> None:
            for w in list(self._writers):
                w.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)

    def cut_all(self) -> None:
        def cut() -> None:
            for w in list(self._writers):
                w.close()

        self._loop.call_soon_threadsafe(cut)

    def stall(self) -> None:
        """The connections open now stop carrying bytes, both ways, and are not closed."""

        async def mark() -> None:
            self._stalled |= {id(w) for w in self._writers}

        asyncio.run_coroutine_threadsafe(mark(), self._loop).result(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        self.opened += 1
        self.open += 1
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            # The proxy stopping: end quietly (asyncio's server callback logs a client task that ends cancelled).
            writer.close()
        finally:
            self.open -= 1

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.latency:
            await asyncio.sleep(2 * self.latency)  # the TCP handshake's round trip
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        sent = [0]
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, sent, reply=False), self._pipe(up_reader, writer, sent, reply=True)
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                self._stalled.discard(id(w))
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[int], *, reply: bool
    ) -> None:
        line: asyncio.Queue[tuple[float, bytes]] | None = asyncio.Queue() if self.latency else None
        sender = asyncio.ensure_future(self._send_later(line, writer)) if line is not None else None
        try:
            await self._forward(reader, writer, sent, reply=reply, line=line)
        finally:
            if line is not None and sender is not None:
                # What is still on the line arrives before the close does.
                line.put_nowait((asyncio.get_running_loop().time() + self.latency, b""))
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(sender, self.latency + 5)
        writer.close()

    async def _send_later(self, line: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                due, data = await line.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    return
                writer.write(data)
                await writer.drain()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sent: list[int],
        *,
        reply: bool,
        line: asyncio.Queue[tuple[float, bytes]] | None,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data or self.down:
                    break
                if not reply:
                    sent[0] += len(data)
                if reply and self.cut_replies > 0 and sent[0] >= self.request_bytes:
                    self.cut_replies -= 1
                    self.cut_count += 1
                    break
                if id(writer) in self._stalled:
                    continue  # swallowed: the peer hears nothing, and nothing is closed
                if line is not None:
                    line.put_nowait((asyncio.get_running_loop().time() + self.latency, data))
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()


@contextlib.contextmanager
def fault_proxy(target_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
