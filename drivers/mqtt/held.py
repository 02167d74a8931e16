"""Messages that name a device the driver cannot resolve yet, kept (persisted, bounded) until the map comes.

After a restart the broker delivers its queued backlog before the retained ``zigbee2mqtt/bridge/devices``; a state
message for a friendly name not in the map is neither dropped nor filed under an invented id: it is held here,
persisted so its PUBACK can go out (the window must not clog), and decoded again with its own receipt time once
the device list arrives. At most ``limit`` are held; beyond that the oldest is dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Final

import msgspec

from drivers.memory import Memory

HELD_NS: Final = "mqtt.held"


class HeldMessage(msgspec.Struct, frozen=True, array_like=True):
    topic: str
    payload: bytes
    ts: float


class Held:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._messages: collections.OrderedDict[str, HeldMessage] = collections.OrderedDict()
        self._next = 0
        self.dropped = 0
        self.total = 0

    def __len__(self) -> int:
        return len(self._messages)

    def restore(self, records: dict[str, bytes]) -> None:
        for key in sorted(records):
            self._messages[key] = msgspec.msgpack.decode(records[key], type=HeldMessage)
            self._next = max(self._next, int(key, 16) + 1)

    def add(self, message: HeldMessage, memory: Memory) -> asyncio.Future[Any]:
        """Keeps ``message``; the future resolves when it is persisted."""
        key = f"{self._next:016x}"  # hex of a counter: sorting the keys gives the arrival order
        self._next += 1
        self.total += 1
        self._messages[key] = message
        while len(self._messages) > self.limit:
            old, _ = self._messages.popitem(last=False)
            self.dropped += 1
            memory.save(HELD_NS, old, None)
        return memory.save(HELD_NS, key, msgspec.msgpack.encode(message))

    def items(self) -> list[tuple[str, HeldMessage]]:
        return list(self._messages.items())

    def release(self, key: str, memory: Memory) -> None:
        """Forgets a held message; its record is deleted with the readings submitted in this tick."""
        if self._messages.pop(key, None) is not None:
            memory.save(HELD_NS, key, None, with_readings=True)
