"""Encoders for the BLE advertisement formats, written from the format descriptions, for round-trip tests.

They are independent of the decoders on purpose (struct layouts here, int.from_bytes there) and are checked against
the real vectors in tests/unit/test_ble_encode.py before the property tests lean on them.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import AESCCM


def bthome(
    objects: bytes,
    *,
    mac: bytes | None = None,
    include_mac: bool = False,
    sleepy: bool = False,
    key: bytes | None = None,
    counter: int = 0,
) -> bytes:
    """BTHome v2 service data; ``mac`` (written order) is needed when encrypting or including it."""
    info = 0x40 | (0x01 if key else 0) | (0x02 if include_mac else 0) | (0x04 if sleepy else 0)
    head = bytes([info])
    if include_mac:
        assert mac is not None
        head += mac[::-1]
    if key is None:
        return head + objects
    assert mac is not None
    counter_bytes = struct.pack("<I", counter)
    nonce = mac + b"\xd2\xfc" + bytes([info]) + counter_bytes
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, objects, None)
    return head + sealed[:-4] + counter_bytes + sealed[-4:]


def mibeacon(
    objects: bytes,
    *,
    product_id: int,
    frame_counter: int,
    mac: bytes,
    include_mac: bool = True,
    key: bytes | None = None,
    ext_counter: int = 0,
    version: int = 5,
    extra_flags: int = 0,
) -> bytes:
    """MiBeacon service data with an object payload; encrypted (v4/v5 AES-CCM) when ``key`` is given.

    ``extra_flags`` are frame-control bits the decoder does not act on (0x0100 registered, 0x0C00 auth mode)."""
    fc = 0x40 | (version << 12) | (0x10 if include_mac else 0) | (0x08 if key else 0) | extra_flags
    head = struct.pack("<HHB", fc, product_id, frame_counter) + (mac[::-1] if include_mac else b"")
    if key is None:
        return head + objects
    ext = struct.pack("<I", ext_counter)[:3]
    nonce = mac[::-1] + struct.pack("<HB", product_id, frame_counter) + ext
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, objects, b"\x11")
    return head + sealed[:-4] + ext + sealed[-4:]


def mi_object(object_id: int, data: bytes) -> bytes:
    return struct.pack("<HB", object_id, len(data)) + data


def atc1441(mac: bytes, temp_decidegrees: int, humidity: int, battery: int, millivolts: int, counter: int) -> bytes:
    return mac + struct.pack(">hBBHB", temp_decidegrees, humidity, battery, millivolts, counter)


def pvvx(
    mac: bytes, temp_centidegrees: int, humidity_centi: int, millivolts: int, battery: int, counter: int, flags: int
) -> bytes:
    return mac[::-1] + struct.pack("<hHHBBB", temp_centidegrees, humidity_centi, millivolts, battery, counter, flags)


def ruuvi5(
    temp: int,
    humidity: int,
    pressure: int,
    acc: tuple[int, int, int],
    battery: int,
    tx: int,
    movement: int,
    sequence: int,
    mac: bytes,
) -> bytes:
    """Raw field values (the format's units, not hPa or V); 11-bit battery and 5-bit tx share one u16."""
    return struct.pack(">BhHHhhhHBH", 5, temp, humidity, pressure, *acc, battery << 5 | tx, movement, sequence) + mac
