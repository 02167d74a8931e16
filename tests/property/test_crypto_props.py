"""Records round-trip; anything tampered, moved, swapped or opened with the wrong key is refused, never misread."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from gateway import crypto
from gateway.errors import DecryptError

algorithms = st.sampled_from(list(crypto.Algorithm))
keys = st.binary(min_size=32, max_size=32)
epochs = st.integers(min_value=0, max_value=2**32 - 1)
payloads = st.binary(max_size=2048)
contexts = st.binary(min_size=1, max_size=64)


def _refused(key: bytes, record: bytes, context: bytes) -> bool:
    try:
        crypto.open_record(key, record, context)
    except DecryptError:
        return True
    return False


@given(keys, algorithms, epochs, payloads, contexts)
def test_round_trip(key: bytes, alg: crypto.Algorithm, epoch: int, data: bytes, ctx: bytes) -> None:
    record = crypto.seal(key, alg, epoch, data, ctx)
    assert crypto.record_epoch(record) == epoch
    assert crypto.open_record(key, record, ctx) == data
    assert len(record) == len(data) + crypto.OVERHEAD


@given(keys, algorithms, epochs, payloads, contexts, st.data())
def test_any_flipped_bit_is_refused(
    key: bytes, alg: crypto.Algorithm, epoch: int, data: bytes, ctx: bytes, pick: st.DataObject
) -> None:
    record = bytearray(crypto.seal(key, alg, epoch, data, ctx))
    bit = pick.draw(st.integers(min_value=0, max_value=len(record) * 8 - 1))
    record[bit // 8] ^= 1 << (bit % 8)
    assert _refused(key, bytes(record), ctx)


@given(keys, algorithms, epochs, payloads, contexts, contexts)
def test_a_record_moved_to_another_place_is_refused(
    key: bytes, alg: crypto.Algorithm, epoch: int, data: bytes, ctx: bytes, other: bytes
) -> None:
    record = crypto.seal(key, alg, epoch, data, ctx)
    if other != ctx:
        assert _refused(key, record, other)


@given(keys, algorithms, epochs, epochs, payloads, contexts)
def test_a_record_relabelled_to_another_epoch_is_refused(
    key: bytes, alg: crypto.Algorithm, epoch: int, other: int, data: bytes, ctx: bytes
) -> None:
    record = bytearray(crypto.seal(key, alg, epoch, data, ctx))
    if other != epoch:
        record[2:6] = other.to_bytes(4, "big")
        assert _refused(key, bytes(record), ctx)


@given(keys, keys, algorithms, epochs, payloads, contexts)
def test_the_wrong_key_is_refused(
    key: bytes, wrong: bytes, alg: crypto.Algorithm, epoch: int, data: bytes, ctx: bytes
) -> None:
    record = crypto.seal(key, alg, epoch, data, ctx)
    if wrong != key:
        assert _refused(wrong, record, ctx)


@given(st.binary(max_size=200), keys, contexts)
def test_garbage_is_refused_not_raised_otherwise(blob: bytes, key: bytes, ctx: bytes) -> None:
    assert _refused(key, blob, ctx)


def test_nonces_do_not_repeat_over_many_records() -> None:
    key = os.urandom(32)
    nonces = {
        crypto.seal(key, crypto.Algorithm.AES_256_GCM, 1, b"", b"c")[crypto.HEADER.size : crypto.HEADER.size + 12]
        for _ in range(100_000)
    }
    assert len(nonces) == 100_000
