"""An optional channel on a reading keeps two probes of one device apart (issue 15, item 5): decoded by BTHome,
kept in the store's frames, carried on the wire only when set, taken by the register; readings and frames from
before channels existed decode unchanged."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from cloud_sync import protocol
from cloud_sync.register.ingest import _reading_rows
from drivers.ble import bthome
from drivers.ble.common import Decoded
from gateway.model import Lane, Quantity, Reading
from gateway.store import frames
from tests.support.stores import open_store

T0 = 1_795_000_000.0


class OldReading(msgspec.Struct, frozen=True, array_like=True):
    """The reading as frames stored it before channels: four fields."""

    device_id: str
    quantity: Quantity
    value: float
    ts: float


def test_frames_written_before_channels_decode_and_an_empty_channel_costs_next_to_nothing() -> None:
    rng = random.Random(15)
    old = [
        OldReading(f"ble:a4:c1:38:00:00:{i % 20:02x}", Quantity.TEMPERATURE, round(rng.uniform(15, 25), 2), T0 + i)
        for i in range(500)
    ]
    plain = [Reading(r.device_id, r.quantity, r.value, r.ts) for r in old]
    assert frames.decode(frames.encode(old)) == plain  # type: ignore[arg-type]
    assert len(frames.encode(plain)) <= len(frames.encode(old)) * 1.01  # type: ignore[arg-type]
    probes = [
        Reading("ble:a", Quantity.TEMPERATURE, 21.5, T0, "1"),
        Reading("ble:a", Quantity.TEMPERATURE, 4.0, T0, "2"),
    ]
    assert frames.decode(frames.encode(probes)) == probes


def test_bthome_numbers_repeated_objects_and_leaves_single_ones_alone() -> None:
    # BTHome v2, unencrypted: temperature 0x02 twice (25.00 °C, 4.50 °C), humidity 0x03 once (50.00 %).
    payload = bytes([0x40, 0x02, 0xC4, 0x09, 0x03, 0x88, 0x13, 0x02, 0xC2, 0x01])
    result = bthome.decode("A4:C1:38:00:00:01", {bthome.SERVICE_UUID: payload}, ts=T0)
    assert isinstance(result, Decoded)
    assert [(r.quantity, r.value, r.channel) for r in result.readings] == [
        (Quantity.TEMPERATURE, 25.0, "1"),
        (Quantity.HUMIDITY, 50.0, ""),
        (Quantity.TEMPERATURE, 4.5, "2"),
    ]


async def test_the_store_keeps_the_channel_and_sends_it_only_when_set(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.submit_readings(
            [
                Reading("ble:a", Quantity.TEMPERATURE, 25.0, T0, "1"),
                Reading("ble:a", Quantity.TEMPERATURE, 4.5, T0, "2"),
                Reading("ble:b", Quantity.HUMIDITY, 50.0, T0),
            ]
        )
        await store.flush()
        items = await store.pending(Lane.READINGS)
    bodies = [i.body for i in items]
    assert [b.get("channel") for b in bodies] == ["1", "2", None]
    batch = protocol.IngestBatch("hub-1", "readings", [protocol.Item(i.seq, i.ts, i.body) for i in items])
    typed = protocol.decode_batch("readings", protocol.decompress_bounded(protocol.encode_batch(batch)))
    assert isinstance(typed, protocol.ReadingsBatch)
    rows = _reading_rows(typed, "household-1", T0)
    assert [(r["device_id"], r["channel"], r["value"]) for r in rows] == [
        ("ble:a", "1", 25.0),
        ("ble:a", "2", 4.5),
        ("ble:b", "", 50.0),
    ]


def test_the_wire_takes_readings_without_a_channel_and_refuses_a_bad_one() -> None:
    old_hub = {"device_id": "ble:a", "quantity": "temperature", "value": 1.0, "ts": T0}
    assert msgspec.convert(old_hub, protocol.ReadingBody).channel == ""
    assert msgspec.convert({**old_hub, "channel": "2"}, protocol.ReadingBody).channel == "2"
    for bad in ("x" * 17, "a b", "ü"):
        items = [protocol.Item(0, T0, old_hub), protocol.Item(1, T0, {**old_hub, "channel": bad})]
        wire = protocol.encode_batch(protocol.IngestBatch("hub-1", "readings", items))
        with pytest.raises(protocol.ProtocolError, match=r"channel .* - at `\$\.items\[1\]\.body\.channel`") as err:
            protocol.decode_batch("readings", protocol.decompress_bounded(wire))
        assert err.value.status == 422
