"""The miIO hello: a 32-byte probe that every device answers with its device id and stamp.

Two forms: :func:`hello` (blocking, one device, used by the python-miio handshake in a worker thread) and
:func:`discover` (asyncio, any number of answers to a broadcast or unicast probe). Both only use the pure codec.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import msgspec

from drivers.miio import packet

log = logging.getLogger(__name__)


class HelloReply(msgspec.Struct, frozen=True, kw_only=True):
    device_id: int
    stamp: int
    host: str
    port: int
    token_hint: bool
    """The reply carried something other than ff/00 in the checksum field: an unprovisioned device's token."""


def _reply(data: bytes, addr: tuple[Any, ...]) -> HelloReply | None:
    header, _ = packet.decode_hello_reply(data)
    if header is None:
        return None
    hint = header.checksum not in (b"\xff" * 16, b"\x00" * 16)
    return HelloReply(device_id=header.device_id, stamp=header.stamp, host=addr[0], port=addr[1], token_hint=hint)


def hello(host: str, port: int, timeout: float, attempts: int = 2) -> HelloReply | None:
    """Blocking unicast hello to one device; its reply, or ``None`` if it stayed silent ``attempts`` times."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(max(1, attempts)):
            sock.sendto(packet.HELLO, (host, port))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, addr = sock.recvfrom(1024)
                except TimeoutError:
                    break
                reply = _reply(data, addr)
                if reply is not None:
                    return reply
    return None


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: dict[tuple[str, int], HelloReply] = {}
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if packet.is_hello(data):
            return  # our own broadcast, looped back
        reply = _reply(data, addr)
        if reply is None:
            self.ignored += 1
        else:
            self.replies.setdefault((reply.host, reply.device_id), reply)


async def discover(target: str, port: int, timeout: float, *, repeats: int = 3) -> list[HelloReply]:
    """Sends the hello ``repeats`` times to ``target:port`` (a broadcast or a single address) and collects the
    distinct answers that arrive within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    collector = _Collector()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: collector, family=socket.AF_INET, local_addr=("0.0.0.0", 0), allow_broadcast=True
    )
    try:
        # UDP may drop a probe; like python-miio, send it a few times, spread over the first part of the window.
        deadline = loop.time() + timeout
        for i in range(repeats):
            transport.sendto(packet.HELLO, (target, port))
            if i + 1 < repeats:
                await asyncio.sleep(min(0.1, timeout / (4 * repeats)))
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    finally:
        transport.close()
    if collector.ignored:
        log.debug("discovery ignored %d datagrams that were not hello replies", collector.ignored)
    return sorted(collector.replies.values(), key=lambda r: (r.host, r.device_id))
