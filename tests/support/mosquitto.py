"""The ``mosquitto`` fixture: a real broker on a free 127.0.0.1 port for one test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kotihub_tools.broker import MosquittoBroker, start_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running mosquitto: ``.host``, ``.port``, ``.restart()``; stopped after the test."""
    with start_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker
