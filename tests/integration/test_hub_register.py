"""The daemon and the register together, as in a home: provisioning, sync, commands, and a hub that was offline."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene
from tests.integration.test_daemon import HubProcess, wait_until
from tests.support.register import RunningRegister
from tests.support.tcpproxy import FaultProxy, fault_proxy


class SyncedHub(HubProcess):
    """The daemon with its uplink on, towards ``register_url``."""

    def __init__(self, root: Path, broker: MosquittoBroker, register_url: str) -> None:
        super().__init__(
            root,
            broker,
            f'[uplink]\nenabled = true\nregister_url = "{register_url}"\nbackoff_initial = 0.05\n'
            # What reaches the register is what this tests, not how long readings linger on the hub.
            "backoff_max = 0.5\ncommand_poll_wait = 1.0\nreadings_linger_s = 5.0\n",
        )


@pytest.fixture
def proxy(register: RunningRegister) -> Iterator[FaultProxy]:
    with fault_proxy(register.port) as p:
        yield p


@pytest.fixture
def synced_hub(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister, proxy: FaultProxy
) -> Iterator[tuple[SyncedHub, str]]:
    household = register.create_household("Virtanen")
    register.add_member(household, "Aino")
    hub = SyncedHub(tmp_path, mosquitto, proxy.url)
    token = register.enroll_token(household)
    code = register.pairing_code(household)
    assert code is not None
    ca = str(register.ca_file)
    first = hub.cli("provision", "--register", proxy.url, "--token", token, "--ca-file", ca, "--pairing-code", code)
    assert first.returncode == 0, first.stderr
    assert code in first.stdout  # the pinned pairing code is shown
    again = hub.cli(
        "provision",
        "--register",
        proxy.url,
        "--token",
        register.enroll_token(household),
        "--ca-file",
        str(register.ca_file),
        "--pairing-code",
        code,
    )
    assert again.returncode == 1  # refuses to run twice without --force
    hub.start()
    yield hub, household
    if hub.proc is not None and hub.proc.poll() is None:
        hub.stop(signal.SIGTERM)


def test_readings_alarms_devices_and_commands_reach_the_register(
    synced_hub: tuple[SyncedHub, str], register: RunningRegister, mosquitto: MosquittoBroker
) -> None:
    hub, household = synced_hub
    hub_id = HubIdentity(hub.state).hub_id()
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: register.items(hub_id, "readings"), what="readings in the register")
    wait_until(lambda: [b for _, b in register.items(hub_id, "alarm") if b["kind"] == "smoke"], what="alarms")
    sync = hub.cli_json("sync")
    assert sync["lanes"]["readings"]["last_success"] is not None
    assert sync["lanes"]["readings"]["batch_items"] == 5000  # a few readings: a page not full, so it did not grow
    now = hub.cli("sync", "--now")
    assert now.returncode == 0
    [readings_row] = [line.split() for line in now.stdout.splitlines() if line.startswith("readings ")]
    assert readings_row[-1] == "5,000"  # the table's last column: the lane's batch
    register.queue_command(household, "restrict", {"category": "presence", "on": True})
    wait_until(lambda: "presence" in hub.cli_json("status")["restricted"], what="the restrict command")
    wait_until(lambda: all(c["status"] == "done" for c in register.reg.commands(household)), what="the command result")


def test_a_hub_offline_during_an_erasure_request_carries_it_out_when_back(
    synced_hub: tuple[SyncedHub, str], register: RunningRegister, mosquitto: MosquittoBroker, proxy: FaultProxy
) -> None:
    hub, household = synced_hub
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: len(hub.cli_json("devices")) >= 4, what="devices")
    proxy.down = True
    proxy.cut_all()
    register.queue_command(household, "erase", {"scope": "all"})
    # While offline nothing reaches the hub: its data stays.
    wait_until(lambda: hub.cli_json("sync")["lanes"]["diagnostics"]["last_error"], what="the hub to notice")
    assert len(hub.cli_json("devices")) >= 4
    proxy.down = False
    wait_until(lambda: hub.cli_json("devices") == [], timeout=60, what="the erasure after reconnecting")
    wait_until(
        lambda: [c for c in register.reg.commands(household) if c["kind"] == "erase" and c["status"] == "done"],
        what="the erasure receipt to reach the register",
    )


def test_an_erasure_asked_on_the_hub_while_offline_reaches_the_register(
    synced_hub: tuple[SyncedHub, str], register: RunningRegister, mosquitto: MosquittoBroker, proxy: FaultProxy
) -> None:
    hub, household = synced_hub
    hub_id = HubIdentity(hub.state).hub_id()
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: register.items(hub_id, "readings"), what="readings in the register")
    proxy.down = True
    proxy.cut_all()
    erased = hub.cli_json("erase", "--all", "--yes")
    receipt_id = erased["receipt"]["receipt_id"]
    # Offline: the hub's copy is gone, the register's is not yet.
    assert hub.cli_json("devices") == []
    assert register.items(hub_id, "readings")
    # The request waits in the store: a power cut before the register is reachable again loses nothing.
    hub.stop(signal.SIGKILL)
    hub.start()
    assert hub.cli_json("receipt", "list")["waiting_for_register"] == [receipt_id]
    listed = hub.cli("receipt", "list")
    assert receipt_id in listed.stdout and "waiting" in listed.stdout
    proxy.down = False
    wait_until(
        lambda: hub.cli_json("receipt", "list")["waiting_for_register"] == [], timeout=60, what="the register's receipt"
    )
    stored = hub.cli_json("receipt", "list")["receipts"][-1]
    asked = stored["receipt"]["requested_at"]
    # Only what the restarted hub measured after the erasure (the broker's retained states) may be there.
    for lane in ("readings", "alarm", "events"):
        assert [b for _, b in register.items(hub_id, lane) if b["ts"] <= asked] == []
    assert stored["receipt"]["receipt_id"] == receipt_id
    assert stored["register_receipt"]["receipt"]["erased"]["readings"] > 0
    # Both signatures verify, each bound to its signer: this hub's enrolled key and the register's CA.
    path = hub.root / "receipt.json"
    path.write_text(json.dumps(stored))
    checked = hub.cli_json("receipt", "verify", str(path), "--ca", str(register.ca_file))
    assert checked["signers"] == [f"hub:{household}:{hub_id}", "register"]
    stored["register_receipt"]["receipt"]["erased"]["readings"] = 0
    path.write_text(json.dumps(stored))
    tampered = hub.cli("receipt", "verify", str(path), "--ca", str(register.ca_file))
    assert tampered.returncode == 1 and "does NOT verify" in tampered.stderr
    # A resent request (as after a reply lost on the way back) gets the same receipt, and erases nothing twice.
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(hub.state / "hub.crt"), str(hub.state / "hub.key"))
    session.verify = str(register.ca_file)
    again = session.post(
        f"{register.url}/v1/erasures",
        json={
            "receipt_id": receipt_id,
            "scope": "all",
            "requested_at": stored["receipt"]["requested_at"],
            "hub_receipt": {k: v for k, v in stored.items() if k != "register_receipt"},
        },
    )
    assert again.status_code == 200 and again.json()["signature"] == stored["register_receipt"]["signature"]
