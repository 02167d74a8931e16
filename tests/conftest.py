"""Shared pytest set-up. Fixture modules under tests/support/ are registered here as plugins."""

import signal

import pytest
from hypothesis import settings

# Every property test runs the same examples each time (seeded from the test), and none fails for taking longer than
# hypothesis's 200 ms per example: CI is a busy 2-core machine running two test processes side by side.
settings.register_profile("kotihub", derandomize=True, deadline=None)
settings.load_profile("kotihub")

# Started in the background without job control (`scripts/test &` from a script, nohup), the suite would inherit
# SIGINT ignored and pass it on to every process it starts: the Ctrl-C tests would then wait out their timeouts.
# Python's own handler here is reset to the default in each child at exec, so they see Ctrl-C as a person would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins: list[str] = [
    "tests.support.postgres",
    "tests.support.register",
    "tests.support.register_fleet",
    "tests.support.camera",
    "tests.support.mosquitto",
    "tests.support.notify",
    "tests.support.webapp",
    "tests.support.browser",
    "tests.support.updates",
]

# The slowest test files, slowest first (from `--durations`). `scripts/test` runs two workers, each taking whole
# files in collection order; starting these first keeps one worker from finishing a long crash test alone at the end.
SLOW_FIRST = (
    "tests/integration/test_store_crash.py",
    "tests/integration/test_install.py",
    "tests/integration/test_mqtt_acks.py",
    "tests/integration/test_erasure_crash.py",
    "tests/integration/test_register_openapi.py",
    "tests/integration/test_updater_switch.py",
    "tests/integration/test_clip_chaos.py",
    "tests/integration/test_sync_crash.py",
    "tests/integration/test_notify_crash.py",
    "tests/integration/test_ble_adoption.py",
    "tests/hil/test_bench_harness.py",
    "tests/integration/test_daemon.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.nodeid.split("::", 1)[0], len(rank)), order[id(item)]))
