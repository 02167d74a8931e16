"""Acknowledging MQTT messages only once what they produced is committed (PUBACK after commit).

paho acknowledges a QoS 1 message as soon as its ``on_message`` returns; with ``manual_ack`` the driver sends the
PUBACK itself. :class:`Acker` sends them in the order the messages arrived (MQTT 3.1.1 §4.6), each after the
future of its commit resolved. The broker lets only so many messages wait for their acknowledgement
(mosquitto's ``max_inflight_messages``, 20 by default): holding acks for the store's one-second group commit would
cap the driver at ~20 messages/s, so when the whole window is waiting, the Acker asks the store to commit now.
Commits run one after another, each mostly an fsync: one commit per full window (not two of half a window each)
is what gives the highest rate.

:class:`Recent` remembers digests of the last messages handled, persisted with the readings they produced, so that
a message the broker redelivers after a crash (``dup`` set: its PUBACK was lost) is acknowledged without being
stored a second time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho

from drivers.memory import Memory

RECENT_NS: Final = "mqtt.recent"
RECENT_SIZE: Final = 256
"""Digests remembered: twice the handled messages that may wait for a PUBACK (:data:`MAX_UNACKED`), which bounds
what the broker can redeliver of what was stored."""
DIGEST_SIZE: Final = 8
MAX_UNACKED: Final = RECENT_SIZE // 2
"""Handled messages allowed to wait for their PUBACK: fewer than :data:`RECENT_SIZE`, so a redelivery of any of
them after a crash finds its digest."""


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


def received(client: aiomqtt.Client) -> Iterator[aiomqtt.Message]:
    """The messages aiomqtt has already queued, without waiting (its iterator yields to the loop per message)."""
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    while not queue.empty():
        yield queue.get_nowait()


class Acker:
    """Sends PUBACKs in arrival order, each once its message's commit future resolved."""

    def __init__(self, client: aiomqtt.Client, memory: Memory, window: int, *, most: int = MAX_UNACKED) -> None:
        self._paho = paho_client(client)
        self._memory = memory
        self._window = window
        self._queue: asyncio.Queue[tuple[int, int, asyncio.Future[Any]]] = asyncio.Queue()
        self.unacked = 0
        self.acked = 0
        self.early_commits = 0
        self.most_unacked = 0
        self._most = most
        self._since_commit = 0
        self._room = asyncio.Event()
        self._room.set()

    def add(self, mid: int, qos: int, committed: asyncio.Future[Any]) -> None:
        self._queue.put_nowait((mid, qos, committed))
        self.unacked += 1
        self.most_unacked = max(self.most_unacked, self.unacked)
        if self.unacked >= self._most:
            self._room.clear()
        self._since_commit += 1
        if self._since_commit >= self._window:
            # The broker sends nothing more once its window is full: commit now rather than at the deadline.
            self._since_commit = 0
            self.early_commits += 1
            self._memory.commit_soon()

    async def wait_room(self) -> None:
        """Returns while fewer than ``most`` handled messages wait for their PUBACK. mosquitto does not always hold
        to its window (a backlog queued while the hub was stalled arrives in one go): this bound keeps every
        handled-but-unacknowledged message's digest in :class:`Recent`, so none can be stored twice."""
        await self._room.wait()

    async def run(self) -> None:
        while True:
            mid, qos, committed = await self._queue.get()
            # A failed commit raises here: the driver reconnects without acknowledging, and the broker redelivers.
            await committed
            self._paho.ack(mid, qos)
            self.unacked -= 1
            self.acked += 1
            if self.unacked < self._most:
                self._room.set()


def digest(topic: str, payload: bytes, mid: int) -> bytes:
    """Identifies one delivery: a redelivery keeps its packet identifier (MQTT 3.1.1 §4.4), while a later message
    with the same payload (a smoke detector's second `clear`) gets another one. The broker counts identifiers up
    to 65,535 before reusing one, far beyond the :data:`RECENT_SIZE` digests remembered."""
    return hashlib.blake2b(
        topic.encode() + b"\x00" + payload + mid.to_bytes(2, "big"), digest_size=DIGEST_SIZE
    ).digest()


class Recent:
    """The digests of the last :data:`RECENT_SIZE` messages handled, each with the future of its commit.

    A ring of fixed size: recording a message costs O(1), and the persisted copy is one 2 KB snapshot per commit.
    """

    def __init__(self) -> None:
        self._ring = bytearray(RECENT_SIZE * DIGEST_SIZE)
        self._pos = 0
        self._futures: dict[bytes, asyncio.Future[Any] | None] = {}

    def restore(self, records: dict[str, bytes]) -> None:
        ring = records.get("ring", b"")
        for i in range(0, min(len(ring), len(self._ring)) - DIGEST_SIZE + 1, DIGEST_SIZE):
            self._put(ring[i : i + DIGEST_SIZE], None)  # committed in an earlier run

    def committed(self, key: bytes) -> asyncio.Future[Any] | None:
        """The commit future of a message handled before (done if it was committed in an earlier run)."""
        if key not in self._futures:
            return None
        fut = self._futures[key]
        if fut is not None and fut.done() and (fut.cancelled() or fut.exception() is not None):
            return None  # that commit failed: the message was not stored, so handle it again
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
        return fut

    def _put(self, key: bytes, fut: asyncio.Future[Any] | None) -> None:
        start = self._pos * DIGEST_SIZE
        old = bytes(self._ring[start : start + DIGEST_SIZE])
        self._futures.pop(old, None)
        self._ring[start : start + DIGEST_SIZE] = key
        self._futures[key] = fut
        self._pos = (self._pos + 1) % RECENT_SIZE

    def add(self, key: bytes, memory: Memory) -> asyncio.Future[Any]:
        """Records a handled message; the returned future resolves once the record (and everything the message
        produced, which was submitted before it) is committed."""
        self._put(key, None)
        # Oldest first, so that a restart (which restores from slot 0) overwrites the oldest digests first.
        split = self._pos * DIGEST_SIZE
        snapshot = bytes(self._ring[split:]) + bytes(self._ring[:split])
        fut = memory.save(RECENT_NS, "ring", snapshot, with_readings=True)
        self._futures[key] = fut
        return fut
