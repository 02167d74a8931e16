"""What every BLE decoder shares: the result types, the reasons for refusing a payload, and replay state.

A decoder returns :class:`Decoded` (model values for one device), :class:`Rejected` (nothing, and why) or ``None``
(the advertisement does not carry its format). It never raises, whatever the bytes.
"""

from __future__ import annotations

import enum
import functools
from typing import Final

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.lru import Lru
from gateway.model import DeviceKind, Event, Reading


def uuid16(short: int) -> str:
    """The 128-bit UUID string bleak uses as the service-data key for a 16-bit UUID."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


# The longest service or manufacturer data one AD structure can carry (length byte 255, minus type and UUID).
MAX_AD_PAYLOAD: Final = 252


class Reason(enum.StrEnum):
    """Why a payload produced nothing. :data:`BENIGN` reasons are normal traffic, not malformed payloads."""

    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    UNSUPPORTED = "unsupported variant"
    UNKNOWN_PRODUCT = "unknown product id"
    UNKNOWN_OBJECT = "unknown object id"
    BAD_VALUE = "value out of its defined range"
    NO_KEY = "encrypted and no bind key"
    AUTH_FAILED = "authentication failed (wrong bind key or corrupt)"
    REPLAY = "replayed counter"
    DOWNGRADE = "plaintext although a bind key is set"
    MAC_MISMATCH = "address in payload differs from sender"
    BAD_ADDRESS = "sender address is not a MAC"
    DUPLICATE = "duplicate packet"
    NO_OBJECT = "beacon without objects"


BENIGN: Final = frozenset({Reason.DUPLICATE, Reason.NO_OBJECT})


class Rejected(msgspec.Struct, frozen=True):
    fmt: str
    reason: Reason


class Decoded(msgspec.Struct, frozen=True, kw_only=True):
    """Model values from one advertisement of one device."""

    fmt: str
    device_id: str
    model: str
    kind: DeviceKind
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    sleepy: bool = False
    """The device sends only on change (BTHome trigger-based, sleepy Xiaomi): silence is not an outage."""
    note: Reason | None = None
    """Set when part of the payload was skipped (e.g. an unknown object after known ones)."""


@functools.lru_cache(maxsize=256)
def ccm(key: bytes) -> AESCCM:
    """AES-CCM with the 4-byte tag both BTHome and MiBeacon use; cached because key set-up dominates small packets."""
    return AESCCM(key, tag_length=4)


def mac_bytes(address: str) -> bytes | None:
    """``"A4:C1:38:02:83:F4"`` as 6 bytes in written order, or None when the address is not a MAC."""
    if len(address) != 17:
        return None
    try:
        raw = bytes.fromhex(address.replace(":", ""))
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


# A counter that falls back below this is taken as the device restarting (battery change), as bthome-ble does;
# anything else that goes backwards is a replay.
COUNTER_RESTART_BELOW: Final = 100


class ReplayState:
    """The last authenticated counter and the last packet id per device, bounded (least recently used forgotten).

    Counters are committed only after a packet authenticated, so a forged packet with a huge counter cannot lock a
    device out. Committed counters are also collected in :attr:`dirty` for the driver to persist (encrypted, in the
    store), and :meth:`restore` loads them after a restart, so a restart opens no replay window.
    """

    def __init__(self, max_devices: int = 4096) -> None:
        self._counters: Lru[tuple[str, str], int] = Lru(max_devices)
        self._packet_ids: Lru[tuple[str, str], tuple[int, float]] = Lru(max_devices)
        self.dirty: dict[tuple[str, str], int] = {}

    def restore(self, counters: dict[tuple[str, str], int]) -> None:
        for key, counter in counters.items():
            self._counters[key] = counter

    def forget(self, address: str | None = None) -> None:
        """Drops what is remembered about ``address`` (every device if None): the household erased it."""
        for table in (self._counters, self._packet_ids, self.dirty):
            for key in [k for k in table if address is None or k[1] == address]:
                del table[key]

    def check_counter(self, fmt: str, address: str, counter: int) -> Reason | None:
        last = self._counters.get((fmt, address))
        if last is None or counter > last:
            return None
        if counter == last:
            return Reason.DUPLICATE
        return None if counter < COUNTER_RESTART_BELOW else Reason.REPLAY

    def commit_counter(self, fmt: str, address: str, counter: int) -> None:
        self._counters[(fmt, address)] = counter
        self.dirty[(fmt, address)] = counter

    def check_packet_id(self, fmt: str, address: str, packet_id: int, ts: float) -> Reason | None:
        """BTHome's rule: within 4 s of the last packet, the same id or one up to 64 behind (mod 256) is old news."""
        last = self._packet_ids.get((fmt, address))
        if last is None or ts - last[1] > 4.0:
            return None
        ahead = (packet_id - last[0]) % 256
        return None if 0 < ahead < 64 else Reason.DUPLICATE

    def commit_packet_id(self, fmt: str, address: str, packet_id: int, ts: float) -> None:
        self._packet_ids[(fmt, address)] = (packet_id, ts)
