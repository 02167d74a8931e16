"""Shared pytest set-up. Fixture modules under tests/support/ are registered here as plugins."""

pytest_plugins: list[str] = [
    "tests.support.postgres",
    "tests.support.register",
    "tests.support.camera",
    "tests.support.mosquitto",
    "tests.support.notify",
    "tests.support.webapp",
    "tests.support.browser",
    "tests.support.updates",
]
