"""Any readings stored come back identical and in order, through frames and through the real store."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Quantity, Reading
from gateway.store import frames
from tests.support.stores import open_store

reading = st.builds(
    Reading,
    st.text(min_size=1, max_size=40),
    st.sampled_from(list(Quantity)),
    st.floats(allow_nan=False),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@given(st.lists(reading, max_size=300))
def test_frames_round_trip(rs: list[Reading]) -> None:
    assert frames.decode(frames.encode(rs)) == rs


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(reading, min_size=1, max_size=40), min_size=1, max_size=6))
def test_store_round_trip_in_order(batches: list[list[Reading]]) -> None:
    async def run(path: Path) -> list[tuple[int, Reading]]:
        async with open_store(path) as store:
            await asyncio.gather(*(store.add_readings(b) for b in batches))
            return list(store.iter_readings())

    with tempfile.TemporaryDirectory() as tmp:
        stored = asyncio.run(run(Path(tmp)))
    flat = [r for b in batches for r in b]
    assert [r for _, r in stored] == flat
    assert [s for s, _ in stored] == list(range(1, len(flat) + 1))
