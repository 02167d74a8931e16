"""How long the hub's command long-poll waits (cloud_sync/uplink/link.py): what the register says it takes, within
the hub's own setting; and what a register that says nothing, or something out of reason, gets: 30 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud_sync import protocol as p
from cloud_sync.uplink.client import HubIdentity
from cloud_sync.uplink.link import Link
from gateway.config import UplinkSection


def link(tmp_path: Path, **config: Any) -> Link:
    section = UplinkSection(enabled=True, register_url="https://127.0.0.1:1", **config)
    # The store is not used by the wait's bookkeeping.
    return Link(store=None, config=section, identity=HubIdentity(tmp_path))  # type: ignore[arg-type]


def test_the_wait_is_the_setting_as_far_as_the_register_takes_it(tmp_path: Path) -> None:
    hub = link(tmp_path)
    assert hub.config.command_poll_wait == 55.0
    assert hub.command_wait() == p.LEGACY_COMMAND_WAIT_S  # nothing heard yet
    hub.heard_wait_max("55")
    assert hub.command_wait() == 55.0
    hub.heard_wait_max(None)  # an older register answered
    assert hub.command_wait() == 30.0
    shorter = link(tmp_path, command_poll_wait=10.0)
    shorter.heard_wait_max("55")
    assert shorter.command_wait() == 10.0


@pytest.mark.parametrize("said", ["", "soon", "nan", "inf", "-1", "86400", "1e400"])
def test_a_header_out_of_reason_is_not_the_registers_word(tmp_path: Path, said: str) -> None:
    hub = link(tmp_path)
    hub.heard_wait_max("55")
    hub.heard_wait_max(said)
    assert hub.command_wait() == p.LEGACY_COMMAND_WAIT_S
