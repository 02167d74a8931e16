"""The heartbeat message: any valid one round-trips through JSON and fits the register's size limit."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync import protocol as p


@settings(derandomize=True, deadline=None, max_examples=100)
@given(
    st.builds(
        p.Heartbeat,
        version=st.from_regex(r"[\x21-\x7e]{0,64}", fullmatch=True),
        uptime_s=st.floats(0, 2.0**40),
        disk_free_bytes=st.integers(0, 2**62),
        disk_total_bytes=st.integers(0, 2**62),
        store_bytes=st.integers(0, 2**62),
        written_bytes_per_day=st.none() | st.integers(0, 2**62),
        written_source=st.sampled_from(["block", "process", ""]),
        drivers=st.dictionaries(
            st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True),
            st.builds(p.DriverStatus, st.from_regex(r"[a-z_]{0,16}", fullmatch=True), st.integers(0, 2**62)),
            max_size=32,
        ),
        lanes=st.dictionaries(
            st.sampled_from(p.LANES),
            st.builds(p.LaneHealth, st.integers(0, 2**62), st.integers(0, 2**62), st.integers(0, 2**62)),
        ),
    )
)
def test_heartbeat_round_trips_and_fits_the_limit(hb: p.Heartbeat) -> None:
    body = msgspec.json.encode(hb)
    assert msgspec.json.decode(body, type=p.Heartbeat) == hb
    assert len(body) <= p.MAX_HEARTBEAT_BYTES
