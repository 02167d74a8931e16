"""Acknowledging MQTT messages only once what they produced is committed (PUBACK after commit).

paho acknowledges a QoS 1 message as soon as its ``on_message`` returns; with ``manual_ack`` the driver sends the
PUBACK itself. :class:`Acker` sends them in the order the messages arrived (MQTT 3.1.1 §4.6), each after the
future of its commit resolved. The broker lets only so many messages wait for their acknowledgement
(mosquitto's ``max_inflight_messages``, 20 by default): holding acks for the store's one-second group commit would
cap the driver at ~20 messages/s, so when half the window and again when the whole window is waiting, the Acker
asks the store to commit now.

:class:`Recent` remembers digests of the last messages handled, persisted with the readings they produced, so that
a message the broker redelivers after a crash (``dup`` set: its PUBACK was lost) is acknowledged without being
stored a second time.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho

from drivers.memory import Memory

RECENT_NS: Final = "mqtt.recent"
RECENT_SIZE: Final = 256
"""Digests remembered: far more than the broker's in-flight window, which bounds what can be redelivered."""
DIGEST_SIZE: Final = 8


def paho_client(client: aiomqtt.Client) -> paho.Client:
    # aiomqtt has no manual-ack API of its own; the paho client it wraps has (paho ≥ 2.0).
    inner = client._client
    assert isinstance(inner, paho.Client)
    return inner


def manual_acks(client: aiomqtt.Client) -> dict[int, bool]:
    """Switches ``client`` to manual acknowledgement; returns the map the driver reads each message's ``dup`` flag
    from (aiomqtt's Message does not carry it), filled by a wrapper around aiomqtt's ``on_message``."""
    inner = paho_client(client)
    inner.manual_ack_set(True)
    dups: dict[int, bool] = {}
    forward = inner.on_message
    assert forward is not None

    def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.qos:
            dups[message.mid] = bool(message.dup)
        forward(c, userdata, message)

    inner.on_message = on_message
    return dups


class Acker:
    """Sends PUBACKs in arrival order, each once its message's commit future resolved."""

    def __init__(self, client: aiomqtt.Client, memory: Memory, window: int) -> None:
        self._paho = paho_client(client)
        self._memory = memory
        self._window = window
        self._early = {max(1, window // 2), window}
        self._queue: asyncio.Queue[tuple[int, int, asyncio.Future[Any]]] = asyncio.Queue()
        self.unacked = 0
        self.acked = 0
        self.early_commits = 0

    def add(self, mid: int, qos: int, committed: asyncio.Future[Any]) -> None:
        self._queue.put_nowait((mid, qos, committed))
        self.unacked += 1
        if self.unacked in self._early:
            # The broker sends nothing more once the window is full: commit now rather than at the deadline.
            self.early_commits += 1
            self._memory.commit_soon()

    async def run(self) -> None:
        while True:
            mid, qos, committed = await self._queue.get()
            # A failed commit raises here: the driver reconnects without acknowledging, and the broker redelivers.
            await committed
            self._paho.ack(mid, qos)
            self.unacked -= 1
            self.acked += 1


def digest(topic: str, payload: bytes) -> bytes:
    return hashlib.blake2b(topic.encode() + b"\x00" + payload, digest_size=DIGEST_SIZE).digest()


class Recent:
    """The digests of the last :data:`RECENT_SIZE` messages handled, each with the future of its commit."""

    def __init__(self) -> None:
        self._futures: collections.OrderedDict[bytes, asyncio.Future[Any] | None] = collections.OrderedDict()

    def restore(self, records: dict[str, bytes]) -> None:
        ring = records.get("ring", b"")
        for i in range(0, len(ring) - DIGEST_SIZE + 1, DIGEST_SIZE):
            self._futures.setdefault(ring[i : i + DIGEST_SIZE], None)  # committed in an earlier run

    def committed(self, key: bytes) -> asyncio.Future[Any] | None:
        """The commit future of a message handled before (done if it was committed in an earlier run)."""
        if key not in self._futures:
            return None
        fut = self._futures[key]
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
        return fut

    def add(self, key: bytes, memory: Memory) -> asyncio.Future[Any]:
        """Records a handled message; the returned future resolves once the record (and everything the message
        produced, which was submitted before it) is committed."""
        self._futures[key] = None
        self._futures.move_to_end(key)
        while len(self._futures) > RECENT_SIZE:
            self._futures.popitem(last=False)
        fut = memory.save(RECENT_NS, "ring", b"".join(self._futures), with_readings=True)
        self._futures[key] = fut
        return fut
