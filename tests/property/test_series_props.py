"""The chart downsampler (cloud_sync.register.series) against a plain-Python reference, on a real SQLite file.

Properties: min <= mean <= max in every bucket, at most the asked number of buckets, every reading inside the
span counted exactly once (edges included: ``since`` is in, ``until`` is out), and each bucket's figures equal
the reference computed from the rows themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from cloud_sync.register import db, series

HH, DEV, Q = "hh_a", "zigbee:0x1", "temperature"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("series") / "register.db"
    engine = db.open_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _load(engine: Engine, rows: list[tuple[str, str, str, float, float]]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(db.readings))
        if rows:
            conn.execute(
                insert(db.readings),
                [
                    {
                        "hub_id": "hub_1",
                        "seq": i,
                        "household_id": h,
                        "device_id": d,
                        "quantity": q,
                        "value": v,
                        "ts": ts,
                        "received_at": ts,
                    }
                    for i, (h, d, q, ts, v) in enumerate(rows)
                ],
            )


values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
SINCE = 1_700_000_000.0


@st.composite
def cases(draw: st.DrawFn) -> tuple[float, float, int, list[tuple[str, str, str, float, float]]]:
    span = draw(st.floats(min_value=60.0, max_value=200 * 86_400.0))
    buckets = draw(st.integers(min_value=series.MIN_BUCKETS, max_value=200))
    until = SINCE + span
    # Times inside, on both edges, and just outside the span; other sensors and another household as decoys.
    inside = st.floats(min_value=SINCE, max_value=until, exclude_max=True)
    edges = st.sampled_from([SINCE, math.nextafter(until, SINCE), until, math.nextafter(SINCE, 0.0), until + 1])
    times = st.one_of(inside, edges)
    owners = st.sampled_from(
        [(HH, DEV, Q), (HH, DEV, Q), (HH, DEV, "humidity"), (HH, "zigbee:0x2", Q), ("hh_b", DEV, Q)]
    )
    rows = draw(st.lists(st.tuples(owners, times, values), max_size=120))
    return SINCE, until, buckets, [(o[0], o[1], o[2], ts, v) for o, ts, v in rows]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(cases())
def test_downsample_matches_reference(
    engine: Engine, case: tuple[float, float, int, list[tuple[str, str, str, float, float]]]
) -> None:
    since, until, buckets, rows = case
    _load(engine, rows)
    out = series.downsample(engine, HH, DEV, Q, since=since, until=until, buckets=buckets)

    mine = [(ts, v) for h, d, q, ts, v in rows if (h, d, q) == (HH, DEV, Q) and since <= ts < until]
    assert out.points == len(mine), "every reading in the span is counted once, edges included"
    assert len(out.t) <= buckets
    assert out.t == sorted(set(out.t))
    for lo, mean, hi in zip(out.lo, out.mean, out.hi, strict=True):
        assert lo <= mean <= hi
    # Each reading belongs to the bucket whose start is the greatest not after it.
    for ts, v in mine:
        k = max(i for i, t in enumerate(out.t) if t <= ts + 1e-6 * out.width)
        assert out.lo[k] <= v <= out.hi[k]
    if mine:
        assert min(out.lo) == min(v for _, v in mine)
        assert max(out.hi) == max(v for _, v in mine)
    js = out.as_json()
    for lo, mean, hi in zip(js["min"], js["mean"], js["max"], strict=True):
        assert lo <= mean <= hi


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(values, min_size=1, max_size=50), st.integers(min_value=series.MIN_BUCKETS, max_value=50))
def test_one_bucket_per_reading_spread(engine: Engine, vals: list[float], buckets: int) -> None:
    """Readings one bucket apart each get their own bucket, with min == mean == max == the value."""
    width = 60.0
    until = SINCE + buckets * width
    rows = [(HH, DEV, Q, SINCE + (i % buckets) * width + width / 2, v) for i, v in enumerate(vals[:buckets])]
    _load(engine, rows)
    out = series.downsample(engine, HH, DEV, Q, since=SINCE, until=until, buckets=buckets)
    assert out.count == [1] * len(rows)
    assert out.lo == out.hi == out.mean == [v for *_, v in rows]


def test_refuses_bad_spans(engine: Engine) -> None:
    from cloud_sync.register.errors import Invalid

    for since, until, buckets in [
        (SINCE, SINCE, 100),
        (SINCE, SINCE - 1, 100),
        (SINCE, SINCE + 401 * 86_400, 100),
        (SINCE, math.inf, 100),
        (SINCE, SINCE + 60, series.MAX_BUCKETS + 1),
        (SINCE, SINCE + 60, series.MIN_BUCKETS - 1),
    ]:
        with pytest.raises(Invalid):
            series.downsample(engine, HH, DEV, Q, since=since, until=until, buckets=buckets)
