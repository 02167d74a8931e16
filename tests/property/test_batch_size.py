"""A bulk lane's batches: how they grow and fall back (cloud_sync.uplink.batchsize), and how a page of the outbox is
cut into them (cloud_sync.uplink.lanes.split_by_bytes)."""

from __future__ import annotations

import itertools

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync import protocol as p
from cloud_sync.uplink.batchsize import MAX_BATCH_BYTES, BatchSize
from cloud_sync.uplink.lanes import split_by_bytes
from gateway.store import OutboxItem

GROW_S = 7.5

# One step of a lane's life: a page sent (full or not, acknowledged after so many seconds), or a failed attempt.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("sent"), st.booleans(), st.floats(0, 2 * GROW_S)),
        st.tuples(st.just("failed"), st.just(False), st.just(0.0)),
    ),
    max_size=40,
)


@given(
    base=st.integers(1, p.MAX_BATCH_ITEMS),
    most=st.integers(1, 3 * p.MAX_BATCH_ITEMS),
    base_bytes=st.integers(1024, 16 * 1024 * 1024),
    steps=_steps,
)
def test_a_batch_grows_only_after_quick_full_pages_and_falls_back_at_a_failure(
    base: int, most: int, base_bytes: int, steps: list[tuple[str, bool, float]]
) -> None:
    size = BatchSize(base, most, base_bytes, grow_within_s=GROW_S)
    ceiling = max(base, min(most, p.MAX_BATCH_ITEMS))
    failed_since = False
    for kind, full, took in steps:
        before = size.items
        if kind == "failed":
            size.failed()
            failed_since = True
            assert size.items == base
        else:
            size.sent(full=full, took_s=took)
            grows = full and took < GROW_S and not failed_since
            assert size.items == (min(ceiling, 2 * before) if grows else before)
            failed_since = False
        assert base <= size.items <= ceiling
        # The byte bound follows the items, never under batch_bytes nor over one body the register takes.
        assert size.bytes == max(base_bytes, min(MAX_BATCH_BYTES, base_bytes * size.items // base))


def test_from_batch_items_to_the_most_in_doublings() -> None:
    size = BatchSize(5_000, 20_000, 1024 * 1024, grow_within_s=GROW_S)
    grown = []
    for _ in range(4):
        size.sent(full=True, took_s=0.1)
        grown.append(size.items)
    assert grown == [10_000, 20_000, 20_000, 20_000]
    assert size.bytes == 4 * 1024 * 1024
    size.sent(full=False, took_s=0.1)  # a short page: the lane has no more waiting; the size stays
    assert size.items == 20_000
    size.failed()
    size.sent(full=True, took_s=0.1)  # the page the failure was part of does not grow the next
    assert (size.items, size.bytes) == (5_000, 1024 * 1024)
    size.sent(full=True, took_s=GROW_S)  # acknowledged too late to grow; nor does it shrink
    assert size.items == 5_000
    size.sent(full=True, took_s=0.1)
    size.sent(full=True, took_s=3 * GROW_S)
    assert size.items == 10_000
    assert BatchSize(5_000, 100_000, 1024, GROW_S).max_items == p.MAX_BATCH_ITEMS  # never more than a batch may hold


_bodies = st.dictionaries(
    st.sampled_from("abcdef"), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=300)), max_size=4
)


@given(
    bodies=st.lists(_bodies, max_size=60), limit=st.integers(16, 4096), most=st.one_of(st.none(), st.integers(1, 20))
)
def test_a_page_is_cut_in_order_under_both_bounds(
    bodies: list[dict[str, object]], limit: int, most: int | None
) -> None:
    items = [OutboxItem(seq=i + 1, ts=0.0, body=b) for i, b in enumerate(bodies)]
    chunks = split_by_bytes(items, limit, most)
    assert [it for c in chunks for it in c] == items  # every item once, in seq order
    assert all(chunks)
    for c in chunks:
        assert len(c) <= (most or len(items))
        estimate = sum(16 + len(msgspec.msgpack.encode(it.body)) for it in c)
        assert len(c) == 1 or estimate <= limit  # only an item over the bound alone goes over it
    # As few batches as the bounds allow: each batch but the last was closed by the next item not fitting.
    for c, nxt in itertools.pairwise(chunks):
        estimate = sum(16 + len(msgspec.msgpack.encode(it.body)) for it in [*c, nxt[0]])
        assert estimate > limit or len(c) == (most or len(items))
