"""A long command does not hold up an urgent one, end to end: the real daemon seals its real export and starts to
upload it, the register holds that upload (the test's gate, in front of the register's app), and an ``alarm_ack``
queued after it is answered meanwhile; a ``restrict`` queued after it still waits for it (both touch the data)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.register import mydata
from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene
from tests.integration import test_hub_register
from tests.integration.test_daemon import wait_until
from tests.integration.test_hub_register import SyncedHub
from tests.support.register import ACTOR, RunningRegister

# The provisioned, paired, running hub of test_hub_register, here towards the gated register below.
proxy, synced_hub = test_hub_register.proxy, test_hub_register.synced_hub


class ExportGate:
    """ASGI wrapper: every request to ``/v1/exports/...`` waits until :attr:`open` is set (counted in ``held``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()
        self.held = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/exports/"):
            self.held += 1
            while not self.open.is_set():  # the test's hand on the upload, polled on the register's event loop
                await asyncio.sleep(0.02)
        await self.app(scope, receive, send)


class GatedRegister(RunningRegister):
    gate: ExportGate

    def wrap_app(self, app: Any) -> Any:
        self.gate = ExportGate(app)
        return self.gate


@pytest.fixture
def register(tmp_path: Path) -> Iterator[GatedRegister]:
    (tmp_path / "register").mkdir()
    r = GatedRegister(tmp_path / "register")
    r.start()
    try:
        yield r
    finally:
        r.gate.open.set()
        r.close()


def test_an_alarm_ack_is_answered_while_a_long_export_uploads(
    synced_hub: tuple[SyncedHub, str], register: GatedRegister, mosquitto: MosquittoBroker
) -> None:
    hub, household = synced_hub
    hub_id = HubIdentity(hub.state).hub_id()
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: register.items(hub_id, "readings"), what="readings in the register")
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 1, what="the hub's verified member list")

    def command(command_id: str) -> dict[str, Any]:
        (found,) = [c for c in register.reg.commands(household) if c["id"] == command_id]
        return found

    (export,) = mydata.ask_hub_export(register.reg, household, actor=ACTOR)
    wait_until(lambda: register.gate.held, timeout=60, what="the hub sealing its copy and starting the upload")
    (restrict,) = register.queue_command(household, "restrict", {"category": "presence", "on": True})
    (ack,) = register.queue_command(household, "alarm_ack")
    wait_until(lambda: command(ack)["status"] == "done", timeout=30, what="the alarm_ack, during the export")
    assert command(export)["status"] == "pending", "the export is still uploading"
    assert command(restrict)["status"] == "pending", "a restriction after an export waits for it"
    assert "presence" not in hub.cli_json("status")["restricted"]

    register.gate.open.set()
    wait_until(lambda: command(restrict)["status"] == "done", timeout=60, what="the export, then the restriction")
    done = {c: command(c) for c in (ack, export, restrict)}
    assert {c["status"] for c in done.values()} == {"done"}, done
    assert done[ack]["completed_at"] < done[export]["completed_at"] <= done[restrict]["completed_at"]
    assert "presence" in hub.cli_json("status")["restricted"]


def test_a_hub_stopped_mid_export_stops_at_once_and_sends_the_same_copy_when_back(
    synced_hub: tuple[SyncedHub, str], register: GatedRegister, mosquitto: MosquittoBroker
) -> None:
    """Stopping the daemon (an update's restart, say) while the register holds its upload: the stop does not wait
    for the upload, the sealed copy stays for the command the register resends, and that same copy is sent."""
    hub, household = synced_hub
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 1, what="the hub's verified member list")
    (export,) = mydata.ask_hub_export(register.reg, household, actor=ACTOR)
    wait_until(lambda: register.gate.held, timeout=60, what="the hub sealing its copy and starting the upload")
    started = time.monotonic()
    code, _ = hub.stop(signal.SIGTERM)
    assert code == 0 and time.monotonic() - started < 10, "the stop waited for the held upload"
    (sealed,) = (hub.root / "run" / "exports").glob("kotihub-export-*.age")
    digest = hashlib.sha256(sealed.read_bytes()).hexdigest()

    register.gate.open.set()
    hub.start()
    wait_until(lambda: command_of(register, household, export)["status"] == "done", timeout=60, what="the export")
    assert command_of(register, household, export)["detail"]["sha256"] == digest, "resent as sealed, not resealed"
    assert not sealed.exists(), "gone once the register holds it"


def command_of(register: RunningRegister, household: str, command_id: str) -> dict[str, Any]:
    (found,) = [c for c in register.reg.commands(household) if c["id"] == command_id]
    return found
