"""The real daemon sends its health heartbeat through its uplink to the real register over TLS, and the
operator's fleet view and metrics show it; while the register is unreachable the hub goes offline there, and the
heartbeat resumes by itself."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloud_sync.register import fleet
from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene
from tests.integration.test_daemon import HubProcess, wait_until
from tests.integration.test_register import bearer
from tests.support.register import RunningRegister
from tests.support.tcpproxy import FaultProxy, fault_proxy


@pytest.fixture
def beating_hub(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister
) -> Iterator[tuple[HubProcess, str, FaultProxy]]:
    with fault_proxy(register.port) as proxy:
        household = register.create_household()
        register.add_member(household)
        hub = HubProcess(
            tmp_path,
            mosquitto,
            f'[uplink]\nenabled = true\nregister_url = "{proxy.url}"\nbackoff_initial = 0.05\nbackoff_max = 0.5\n'
            "command_poll_wait = 1.0\nheartbeat_interval = 1.0\nreadings_linger_s = 5.0\n",
        )
        token = register.enroll_token(household)
        code = register.pairing_code(household)
        assert code is not None
        done = hub.cli(
            "provision", "--register", proxy.url, "--token", token, "--ca-file", str(register.ca_file),
            "--pairing-code", code,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        hub.start()
        try:
            yield hub, HubIdentity(hub.state).hub_id(), proxy
        finally:
            if hub.proc is not None and hub.proc.poll() is None:
                hub.stop(signal.SIGTERM)


def _mine(register: RunningRegister, hub_id: str, window_s: float = fleet.ONLINE_WINDOW_S) -> dict[str, Any]:
    [row] = [
        r for r in fleet.fleet(register.reg, actor="test:fleet", online_window_s=window_s) if r["hub_id"] == hub_id
    ]
    return row


def test_daemon_heartbeat_reaches_the_fleet_view_and_metrics(
    beating_hub: tuple[HubProcess, str, FaultProxy], register: RunningRegister, mosquitto: MosquittoBroker
) -> None:
    hub, hub_id, proxy = beating_hub
    row = wait_until(lambda: (r := _mine(register, hub_id))["last_heartbeat"] and r, what="the first heartbeat")
    assert row["online"] and row["version"]
    assert row["drivers"].get("mqtt") in ("running", "starting")
    assert 0 < row["disk_free_bytes"] <= row["disk_total_bytes"] and row["store_bytes"] > 0
    assert set(row["lag"]) == {"alarm", "events", "readings", "clips", "diagnostics"}
    # The alarm lane pinged its connection at start: the heartbeat says it is held open, and how long a ping took.
    path = wait_until(
        lambda: (a := _mine(register, hub_id)["alarm_path"]) and a["pings"] >= 1 and a, what="the alarm path"
    )
    assert path["kept_open"] and not path["failing"] and path["ping_failures"] == 0 and path["listener"] == "none"
    assert 0 < path["ping_ms"] < 5_000

    # Readings flow; a heartbeat collected after all are acknowledged shows no lag on any lane.
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: register.items(hub_id, "readings"), what="readings in the register")

    def all_acknowledged() -> bool:
        sync = hub.cli_json("sync")
        return bool(sync["lanes"]["readings"]["cursor"] > 0 and not any(sync["depth"].values()))

    wait_until(all_acknowledged, what="everything acknowledged")
    # One heartbeat may have been collected before that; the one after it was collected once it was delivered.
    for _ in range(2):
        seen = _mine(register, hub_id)["last_heartbeat"]
        wait_until(lambda: _mine(register, hub_id)["last_heartbeat"] > seen, what="a later heartbeat")  # noqa: B023
    assert _mine(register, hub_id)["lag"] == dict.fromkeys(("alarm", "events", "readings", "clips", "diagnostics"), 0)

    text = bearer(register, register.api_token("support")).get(f"{register.url}/metrics").text
    assert hub_id not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["kotihub_register_hubs_online"].samples[0].value == 1
    assert any(s.value == 1 for s in families["kotihub_register_hubs_by_version"].samples)
    assert families["kotihub_register_hubs_alarm_path_failing"].samples[0].value == 0
    pinged = [s for s in families["kotihub_register_hub_alarm_ping_ms"].samples if s.labels.get("le") == "+Inf"]
    assert [s.value for s in pinged] == [1]

    # The register unreachable: heartbeats stop arriving, the hub turns offline in a short window, and once the
    # register is back the heartbeat resumes on its own (the daemon keeps running all along).
    proxy.down = True
    proxy.cut_all()
    last = _mine(register, hub_id)["last_heartbeat"]
    wait_until(lambda: not _mine(register, hub_id, window_s=2.0)["online"], what="the hub to go offline")
    assert _mine(register, hub_id)["last_heartbeat"] - last < 2.0  # nothing came through meanwhile
    proxy.down = False
    wait_until(lambda: _mine(register, hub_id, window_s=2.0)["online"], timeout=30, what="heartbeats to resume")
    assert hub.proc is not None and hub.proc.poll() is None


def test_a_stuck_heartbeat_never_delays_an_alarm(
    beating_hub: tuple[HubProcess, str, FaultProxy],
    register: RunningRegister,
    mosquitto: MosquittoBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, hub_id, _ = beating_hub
    wait_until(lambda: _mine(register, hub_id)["last_heartbeat"], what="the first heartbeat")
    # The register runs in this process: make it hang on the next heartbeat (the hub waits up to its read timeout).
    stuck, release = threading.Event(), threading.Event()
    record = fleet.record_heartbeat

    def hang(*args: Any, **kw: Any) -> None:
        stuck.set()
        release.wait(60)
        record(*args, **kw)

    monkeypatch.setattr(fleet, "record_heartbeat", hang)
    try:
        assert stuck.wait(20), "no heartbeat came"
        held = _mine(register, hub_id)["last_heartbeat"]
        asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
        wait_until(
            lambda: [b for _, b in register.items(hub_id, "alarm") if b["kind"] == "smoke"],
            timeout=15,
            what="the smoke alarm while the heartbeat hangs",
        )
        assert _mine(register, hub_id)["last_heartbeat"] == held  # the heartbeat was still hanging meanwhile
    finally:
        release.set()
