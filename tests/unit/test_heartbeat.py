"""The hub's heartbeat parts without a network: the write meter and the sender's failure handling."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from cloud_sync import heartbeat
from cloud_sync import protocol as p
from cloud_sync.uplink import RegisterRejected, RegisterUnavailable
from gateway.hub import Hub
from gateway.model import Category, Quantity, Reading
from gateway.supervisor import TaskHealth
from tests.support.stores import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def block_meter(tmp_path: Path, clock: Clock, window_s: float = 86_400.0) -> tuple[heartbeat.WriteMeter, Path]:
    stat = tmp_path / "stat"
    meter = heartbeat.WriteMeter(tmp_path, window_s=window_s, clock=clock)
    meter._stat, meter.source = stat, "block"  # a stand-in for /sys/dev/block/MAJ:MIN/stat
    return meter, stat


def write_sectors(stat: Path, sectors: int) -> None:
    # The kernel's 17 fields; the 7th is sectors written.
    stat.write_text(f"  100 0 800 10 {0} 0 {sectors} 30 0 40 50 0 0 0 0 0 0\n")


def test_write_meter_scales_the_block_counter_to_a_day(tmp_path: Path) -> None:
    clock = Clock()
    meter, stat = block_meter(tmp_path, clock)
    write_sectors(stat, 1000)
    assert meter.per_day() is None  # one sample is no rate
    clock.now += 60
    write_sectors(stat, 1000 + 120)  # 120 sectors (61,440 bytes) a minute
    assert meter.per_day() == 120 * 512 * 60 * 24


def test_write_meter_forgets_samples_older_than_its_window(tmp_path: Path) -> None:
    clock = Clock()
    meter, stat = block_meter(tmp_path, clock, window_s=100.0)
    write_sectors(stat, 0)
    meter.per_day()
    clock.now += 50
    write_sectors(stat, 10_000)  # a burst early on
    meter.per_day()
    for _ in range(4):
        clock.now += 50
        write_sectors(stat, 10_000)  # then quiet
        rate = meter.per_day()
    assert rate == 0  # the burst has left the window


def test_write_meter_without_a_source_reports_nothing(tmp_path: Path) -> None:
    meter, stat = block_meter(tmp_path, Clock())
    assert meter.per_day() is None  # the stat file is missing
    stat.write_text("garbage")
    assert meter.per_day() is None


def test_write_meter_on_this_machine_has_a_source(tmp_path: Path) -> None:
    meter = heartbeat.WriteMeter(tmp_path)
    assert meter.source in ("block", "process")
    assert isinstance(meter.written(), int)


class FlakyClient:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.closed = False

    def request(self, method: str, path: str, *, data: bytes, headers: dict[str, str]) -> object:
        assert (method, path) == ("PUT", "/v1/heartbeat")
        if self.failures:
            raise self.failures.pop(0)
        self.bodies.append(data)
        return None

    def close(self) -> None:
        self.closed = True


async def test_sender_survives_failures_and_keeps_its_schedule(caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient([RegisterUnavailable("down"), RegisterUnavailable("down"), RegisterRejected("no", status=422)])
    calls = 0

    async def source() -> p.Heartbeat | None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("a bug while collecting")
        if calls == 6:
            return None  # diagnostics restricted: nothing to send
        return p.Heartbeat(version=str(calls), uptime_s=1, disk_free_bytes=1, disk_total_bytes=1, store_bytes=0)

    task = asyncio.create_task(heartbeat.send_forever(lambda: client, source, 0.01))
    deadline = time.monotonic() + 30
    while len(client.bodies) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.closed
    # 1-3 failed to deliver, 4 went, 5 failed to collect, 6 was withheld, 7 and 8 went: nothing stopped the loop.
    assert [msgspec.json.decode(b)["version"] for b in client.bodies[:3]] == ["4", "7", "8"]
    warnings = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(warnings) == 1  # logged once for the streak of three
    assert any("could not collect" in r.getMessage() for r in caplog.records)


async def test_health_source_reads_the_running_hub_and_stays_silent_when_diagnostics_are_restricted(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path) as store:
        hub = Hub(store, offline_after={})
        hub.driver_health["mqtt"] = TaskHealth("mqtt", state="running")
        hub.driver_health["ble"] = TaskHealth("ble", state="restarting", restarts=2)
        hub.driver_health["Not A Name!"] = TaskHealth("Not A Name!", state="running")  # not sent, not refused
        await hub.readings([Reading("mqtt:t1", Quantity.TEMPERATURE, 20.0 + i, 1_760_000_000.0 + i) for i in range(3)])
        await store.flush()
        source = heartbeat.HealthSource(store, hub)
        hb = await source()
        assert hb is not None
        assert hb.drivers == {"mqtt": p.DriverStatus("running"), "ble": p.DriverStatus("restarting", 2)}
        assert hb.lanes["readings"] == p.LaneHealth(newest_seq=3, acked_seq=0, pending=3)
        assert hb.lanes["alarm"] == p.LaneHealth(newest_seq=0, acked_seq=0, pending=0)
        assert 0 < hb.disk_free_bytes <= hb.disk_total_bytes and hb.store_bytes > 0
        assert len(msgspec.json.encode(hb)) <= p.MAX_HEARTBEAT_BYTES
        body = msgspec.json.encode(hb).decode()
        assert "mqtt:t1" not in body and "t1" not in body  # no device ids
        await hub.set_restricted(Category.DIAGNOSTICS, True, actor="household")
        assert await source() is None
