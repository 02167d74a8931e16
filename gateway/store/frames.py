"""Reading frames: the readings of one group commit, msgpack-encoded and zstd-compressed before encryption.

One frame per commit instead of one row per reading is what keeps the bytes written per reading to a few dozen
(SD cards wear out), and what makes the store faster than a plain one-row-per-reading insert.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import zstandard

from gateway.errors import DecryptError
from gateway.model import Reading

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Reading])
MAX_FRAME_BYTES = 64 * 1024 * 1024


def encode(readings: Sequence[Reading]) -> bytes:
    # A compressor object is not thread-safe; one per call costs microseconds.
    return zstandard.ZstdCompressor(level=3).compress(_encoder.encode(readings))


def decode(blob: bytes) -> list[Reading]:
    try:
        raw = zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_FRAME_BYTES)
        return _decoder.decode(raw)
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise DecryptError(f"frame does not decode: {exc}") from exc


def context(first_seq: int, count: int) -> bytes:
    """Associated data binding a frame to its sequence range: a moved or swapped frame fails to open."""
    return b"reading_frames|%d|%d" % (first_seq, count)
