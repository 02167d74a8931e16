"""The HIL suite against real devices on a test bench, described by the TOML file named in ``KOTIHUB_BENCH_FILE``.

Each test needs one kind of hardware; when the bench file does not describe it the test is reported as not run,
with the reason (pytest's skip), never as passed. ``docs/hil.md`` says how to set up a bench and what each test
needs. Secrets (tokens, bind keys, camera passwords) are files in the bench's credentials directory, as on a hub.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from drivers import driver_class
from gateway.model import EventKind, SmokeState
from gateway.secrets import CredentialStore
from tests.support.camera import spool_context
from tests.support.recording_hub import RecordingHub

BENCH_ENV = "KOTIHUB_BENCH_FILE"


def bench() -> dict[str, Any]:
    path = os.environ.get(BENCH_ENV)
    if not path:
        return {}
    return tomllib.loads(Path(path).read_text())


def needs(section: str) -> dict[str, Any]:
    described = bench().get(section)
    if not described:
        where = os.environ.get(BENCH_ENV) or f"{BENCH_ENV} is not set"
        pytest.skip(f"not run: no [{section}] hardware described in the bench file ({where})")
    return dict(described)


def credentials() -> CredentialStore:
    directory = bench().get("credentials_dir", "")
    return CredentialStore(Path("/nonexistent"), credentials_dir=str(directory))


async def run_driver(
    name: str, table: dict[str, Any], until: Callable[[RecordingHub], bool], timeout: float
) -> RecordingHub:
    """Runs the real driver until ``until(hub)`` holds or ``timeout`` (real devices report on their own schedule)."""
    cls = driver_class(name)
    driver = cls(msgspec.convert(table.get("driver", {}), cls.Config), credentials())
    hub = RecordingHub()
    task = asyncio.create_task(driver.run(hub))
    try:
        await hub.wait_for(lambda: until(hub), timeout=timeout)
    finally:
        await _stop(task)
    return hub


async def _stop(task: asyncio.Task[None], grace: float = 15.0) -> None:
    """Cancels a driver and waits for it, but not for ever: a driver that ignores cancellation fails the test with
    where it is stuck, instead of hanging the run (the harness test once timed out that way under load)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.print_stack()
        raise AssertionError(f"the driver did not stop within {grace} s of being cancelled")


@pytest.mark.hardware
async def test_real_mqtt_devices_report() -> None:
    section = needs("mqtt")
    expected = set(section.get("device_ids", []))
    await run_driver(
        "mqtt",
        section,
        lambda hub: expected <= {d.device_id for d in hub.devices} and bool(hub.received),
        float(section.get("listen_s", 120)),
    )


@pytest.mark.hardware
async def test_real_ble_adapter_scans() -> None:
    section = needs("ble")
    expected = set(section.get("device_ids", []))
    await run_driver(
        "ble", section, lambda hub: expected <= {d.device_id for d in hub.devices}, float(section.get("listen_s", 120))
    )


@pytest.mark.hardware
async def test_real_miio_gateway_is_polled() -> None:
    section = needs("miio")
    await run_driver("miio", section, lambda hub: bool(hub.received), float(section.get("listen_s", 60)))


@pytest.mark.hardware
async def test_real_smoke_detector_test_button() -> None:
    section = needs("smoke_test")
    print(f"press the test button of {section['device_id']} now")  # a person at the bench takes part

    def states(hub: RecordingHub) -> list[str]:
        return [e.state for e in hub.events if e.kind is EventKind.SMOKE and e.device_id == section["device_id"]]

    hub = await run_driver(
        section["driver_name"], section, lambda h: SmokeState.TEST in states(h), float(section.get("listen_s", 120))
    )
    assert SmokeState.SMOKE not in states(hub), "a test press must never be reported as smoke"


@pytest.mark.hardware
async def test_real_camera_records() -> None:
    section = needs("camera")
    from drivers.camera.driver import CameraDriver

    cls = driver_class("camera")
    spool = Path(section.get("spool", "/tmp/kotihub-bench-spool"))
    spool.mkdir(parents=True, exist_ok=True)
    context = spool_context(spool, list(section["recipients"]))
    driver = cls(msgspec.convert(section["driver"], cls.Config), credentials(), context)
    assert isinstance(driver, CameraDriver)
    hub = RecordingHub()
    task = asyncio.create_task(driver.run(hub))
    try:
        await hub.wait_for(lambda: bool(hub.devices), timeout=float(section.get("warmup_s", 30)))
        started = time.monotonic()
        clip = await driver.record_clip(section["device_id"], "bench")
        assert clip.size > 0
        assert time.monotonic() - started < 120
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
