"""The miIO packet: a 32-byte header and an AES-128-CBC payload, checksummed with the device token.

Layout (big-endian)::

    0  2  magic 0x2131
    2  2  length of the whole packet
    4  4  unknown (0 in requests and replies, 0xffffffff in the hello)
    8  4  device id (did)
    12 4  stamp (device uptime-ish seconds)
    16 16 MD5(header[0:16] + token + encrypted payload); the token or ff/00 in a hello reply
    32 .. AES-128-CBC(key=MD5(token), iv=MD5(key + token)), PKCS#7

Pure: no I/O, and the decoders never raise on bad input; they return ``None`` with a short reason instead, so the
caller can count it (``DriverStats.bad_payload``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAGIC: Final = 0x2131
HEADER_LEN: Final = 32
TOKEN_LEN: Final = 16
MAX_PACKET: Final = 65535
"""The length field is 16 bits."""

HELLO: Final = bytes.fromhex("21310020" + "ff" * 28)
"""The discovery / handshake request every client sends."""


class Header(msgspec.Struct, frozen=True, kw_only=True):
    length: int
    unknown: int
    device_id: int
    stamp: int
    checksum: bytes


class Packet(msgspec.Struct, frozen=True, kw_only=True):
    """A decrypted, authenticated packet; ``payload`` is the plaintext with python-miio's trailing NULs removed."""

    device_id: int
    stamp: int
    unknown: int
    payload: bytes


def _md5(data: bytes) -> bytes:
    # MD5 is what the protocol prescribes; it is not used here for anything of our own.
    return hashlib.md5(data, usedforsecurity=False).digest()


def key_iv(token: bytes) -> tuple[bytes, bytes]:
    """The AES key and IV a token implies: ``MD5(token)`` and ``MD5(key + token)``."""
    key = _md5(token)
    return key, _md5(key + token)


def _cipher(token: bytes) -> Cipher[modes.CBC]:
    key, iv = key_iv(token)
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt(plaintext: bytes, token: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = _cipher(token).encryptor()
    return enc.update(padded) + enc.finalize()


def decrypt(ciphertext: bytes, token: bytes) -> bytes | None:
    """The PKCS#7-unpadded plaintext, or ``None`` if the ciphertext cannot be this token's."""
    if not ciphertext or len(ciphertext) % 16 or len(token) != TOKEN_LEN:
        return None
    dec = _cipher(token).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


def encode(payload: bytes, *, token: bytes, device_id: int, stamp: int, unknown: int = 0) -> bytes:
    """A complete packet carrying ``payload`` (the caller appends python-miio's trailing NUL if it wants one).

    Raises ``ValueError`` only for a programming error (a token that is not 16 bytes, fields out of range).
    """
    if len(token) != TOKEN_LEN:
        raise ValueError("a miio token is 16 bytes")
    encrypted = encrypt(payload, token)
    length = HEADER_LEN + len(encrypted)
    if length > MAX_PACKET:
        raise ValueError("payload too large for one miio packet")
    head = struct.pack(">HHIII", MAGIC, length, unknown, device_id, stamp)
    return head + _md5(head + token + encrypted) + encrypted


def encode_json(obj: Any, *, token: bytes, device_id: int, stamp: int) -> bytes:
    """A packet with ``obj`` as JSON, serialised exactly as python-miio does (``json.dumps`` + a NUL)."""
    return encode(json.dumps(obj).encode() + b"\x00", token=token, device_id=device_id, stamp=stamp)


def encode_hello_reply(*, device_id: int, stamp: int, checksum: bytes = b"\xff" * 16) -> bytes:
    """The 32-byte answer to a hello. Provisioned devices put ff (or 00) in the checksum, others their token."""
    if len(checksum) != 16:
        raise ValueError("the hello checksum field is 16 bytes")
    return struct.pack(">HHIII", MAGIC, HEADER_LEN, 0, device_id, stamp) + checksum


def decode_header(data: bytes) -> tuple[Header | None, str]:
    """The header of a packet, unauthenticated; ``(None, reason)`` if it is not a miio packet."""
    if len(data) < HEADER_LEN:
        return None, "shorter than a header"
    magic, length, unknown, did, stamp = struct.unpack_from(">HHIII", data)
    if magic != MAGIC:
        return None, "bad magic"
    if length != len(data):
        return None, "length field does not match the datagram"
    return Header(length=length, unknown=unknown, device_id=did, stamp=stamp, checksum=bytes(data[16:32])), ""


def is_hello(data: bytes) -> bool:
    """Whether ``data`` is a hello request (the exact 32 bytes every client sends)."""
    return bytes(data) == HELLO


def decode_hello_reply(data: bytes) -> tuple[Header | None, str]:
    """A hello reply: a bare 32-byte header with the device id and stamp."""
    header, reason = decode_header(data)
    if header is None:
        return None, reason
    if header.length != HEADER_LEN:
        return None, "not a hello reply (has a payload)"
    if header.unknown == 0xFFFFFFFF and header.device_id == 0xFFFFFFFF:
        return None, "a hello request, not a reply"
    return header, ""


def decode(data: bytes, token: bytes) -> tuple[Packet | None, str]:
    """Authenticates and decrypts a packet with ``token``; ``(None, reason)`` for anything else."""
    if len(token) != TOKEN_LEN:
        return None, "token is not 16 bytes"
    data = bytes(data)
    header, reason = decode_header(data)
    if header is None:
        return None, reason
    encrypted = data[HEADER_LEN:]
    if not encrypted:
        return None, "no payload"
    expected = _md5(data[:16] + token + encrypted)
    if not hmac.compare_digest(expected, header.checksum):
        # A wrong token lands here too: the checksum covers it.
        return None, "checksum mismatch (tampered, or another token)"
    plaintext = decrypt(encrypted, token)
    if plaintext is None:
        return None, "payload does not decrypt"
    return Packet(
        device_id=header.device_id, stamp=header.stamp, unknown=header.unknown, payload=plaintext.rstrip(b"\x00")
    ), ""


def decode_json(data: bytes, token: bytes) -> tuple[dict[str, Any] | None, Packet | None, str]:
    """A packet whose payload is a JSON object: ``(object, packet, "")`` or ``(None, packet or None, reason)``."""
    packet, reason = decode(data, token)
    if packet is None:
        return None, None, reason
    try:
        obj = json.loads(packet.payload)
    except (ValueError, RecursionError):
        return None, packet, "payload is not JSON"
    if not isinstance(obj, dict):
        return None, packet, "payload is not a JSON object"
    return obj, packet, ""
