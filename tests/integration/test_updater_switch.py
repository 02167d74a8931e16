"""Side by side, switch, confirm, roll back — with the real daemon as a subprocess, real releases built from this
project (tests/support/updates.py), the real register over TLS and a real broker.

A release that crashes at start, one whose selftest FAILs and one that hangs each roll back by themselves; a good
one is confirmed; readings published before, during and after every switch are all in the store at the end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import select

from cloud_sync.register import rollout
from gateway import crypto
from gateway.control import call
from gateway.store import Store
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import AQARA_ID, AQARA_NAME, Z2M, publish_scene
from tests.integration.test_daemon import wait_until
from tests.support.register import RunningRegister
from tests.support.releases import ReleaseRepo
from tests.support.updates import REPO, DaemonService, Hub, PowerCut, provision_hub, site_packages
from updater import health, state
from updater.apply import Updater
from updater.cli import make_updater, run_once
from updater.install import Layout

WINDOW_S = 12.0
"""The health window: long enough for a good release to start and reach the register on a busy 2-core box."""


@pytest.fixture
def hub(tmp_path: Path, register: RunningRegister, mosquitto: MosquittoBroker, release_bundles: dict[str, Path]) -> Hub:
    return provision_hub(tmp_path, register, mosquitto, window_s=WINDOW_S)


@pytest.fixture
def published(register: RunningRegister, release_bundles: dict[str, Path], hub: Hub, tmp_path: Path) -> ReleaseRepo:
    repo = ReleaseRepo(register, tmp_path / "keys")
    for path in release_bundles.values():
        repo.publish(path)
    Path(hub.updater_cfg.trusted_root).write_bytes(repo.root_file.read_bytes())
    return repo


def _updater(hub: Hub, service: DaemonService) -> Updater:
    updater = make_updater(hub.updater_cfg, service=service, base_site=site_packages())
    updater.poll_s = 0.3
    return updater


def _marker(broker: MosquittoBroker, k: int) -> None:
    """Publishes one temperature (QoS 1) the store must hold afterwards: 10.00 + k/100 °C from the Aqara sensor,
    with battery 1 + k % so that the daemon's device view shows which marker it has seen last."""

    async def send() -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier=f"marker-{os.getpid()}-{k}") as c:
            body = {"temperature": 10 + k / 100, "humidity": 40.0, "battery": 1 + k, "linkquality": 70}
            await c.publish(f"{Z2M}/{AQARA_NAME}", json.dumps(body), qos=1)

    asyncio.run(send())


def _temperatures(state_dir: Path) -> set[float]:
    store = Store.open(state_dir, crypto.load_master_key(state_dir, create=False), crypto.Algorithm.AES_256_GCM)
    try:
        return {
            round(r.value, 2)
            for _, r in store.iter_readings()
            if r.device_id == AQARA_ID and r.quantity == "temperature"
        }
    finally:
        asyncio.run(store.close())


def _outcomes(register: RunningRegister, hub_id: str) -> list[dict[str, str]]:
    oc = rollout.release_outcomes
    with register.reg.engine.begin() as conn:
        return [dict(r) for r in conn.execute(select(oc).where(oc.c.hub_id == hub_id)).mappings()]


def test_bad_releases_roll_back_by_themselves_and_a_good_one_is_kept(
    hub: Hub,
    published: ReleaseRepo,
    daemon_service: DaemonService,
    mosquitto: MosquittoBroker,
    register: RunningRegister,
) -> None:
    updater = _updater(hub, daemon_service)
    first = updater.apply("0.1.0")  # the installation: nothing to roll back to yet
    assert first.outcome == "confirmed", first.detail
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))  # the devices announce themselves
    sent = 0

    def publish_during() -> None:
        nonlocal sent
        _marker(mosquitto, sent)
        sent += 1

    for version, why in (("0.2.1", "exited"), ("0.2.2", "selftest FAIL"), ("0.2.3", "not healthy within")):
        publish_during()
        if version == "0.2.2":
            # This one meets a power cut right after the switch and restart: the updater dies mid-trial. At the
            # next start (a new updater process) it finishes the trial: judges the release and rolls it back.
            daemon_service.cut_power_after_restart = True
            with pytest.raises(PowerCut):
                updater.apply(version)
            assert state.load(updater.state_file).trial_version == version
            assert updater.current() == version  # switched, not judged
            publish_during()
            updater = _updater(hub, daemon_service)
            st = updater.recover()
            attempt = st.history[-1]
            assert (attempt.version, attempt.outcome) == (version, "rolled_back"), attempt
            assert why in attempt.detail
            assert st.phase == "idle" and updater.current() == "0.1.0"
            continue
        result: list[state.Attempt] = []
        worker = threading.Thread(target=lambda v=version, r=result, u=updater: r.append(u.apply(v)))
        worker.start()
        while worker.is_alive():  # readings keep coming while the hub switches, tries, and switches back
            publish_during()
            worker.join(timeout=2.0)
        [attempt] = result
        assert attempt.outcome == "rolled_back", attempt
        assert why in attempt.detail
        assert updater.current() == "0.1.0"
        assert os.readlink(hub.root / "current").endswith("releases/0.1.0")
        # Back on the old release, healthy again (it is the one answering, and it reaches the register).
        wait_until(
            lambda: health.probe(hub.socket, version="0.1.0", require_uplink=True, since=0).healthy,
            timeout=30,
            what="the old release healthy again",
        )

    # The good release comes by the register's rollout: the hub asks, applies, and reports every outcome.
    assert rollout.assignment(register.reg, hub.hub_id).version is None
    rollout.start(register.reg, "0.2.0", 100, actor="test:operator")
    assert run_once(hub.updater_cfg, updater) == 0
    assert state.load(updater.state_file).history[-1].outcome == "confirmed"
    outcomes = {r["version"]: r["outcome"] for r in _outcomes(register, hub.hub_id)}
    assert outcomes == {"0.1.0": "confirmed", "0.2.1": "rolled_back", "0.2.2": "rolled_back",
                        "0.2.3": "rolled_back", "0.2.0": "confirmed"}  # fmt: skip
    assert (updater.current(), Layout(hub.root).version_of(hub.root / "previous")) == ("0.2.0", "0.1.0")
    publish_during()
    assert daemon_service.starts == ["0.1.0", "0.2.1", "0.1.0", "0.2.2", "0.1.0", "0.2.3", "0.1.0", "0.2.0"]
    # Nothing accepted is lost: every temperature published before, during and after the switches is stored.
    wanted = {round(10 + k / 100, 2) for k in range(sent)}

    def last_marker_seen() -> bool:
        devices = call(hub.socket, "devices")
        return any(d["device_id"] == AQARA_ID and d["battery"] == sent for d in devices)

    wait_until(last_marker_seen, what="the last reading on the new release")
    daemon_service.stop()  # SIGTERM: the daemon flushes its group commit
    missing = wanted - _temperatures(hub.state)
    assert not missing, f"lost readings: {sorted(missing)}"
    # An older release is refused outright, without fetching or switching anything.
    older = updater.apply("0.1.0")
    assert older.outcome == "refused" and "older" in older.detail
    assert updater.current() == "0.2.0"
    # The technician's view: `kotihub update status`.
    ucfg = hub.root.parent / "updater.toml"
    ucfg.write_text(f'root = "{hub.updater_cfg.root}"\nstate_dir = "{hub.updater_cfg.state_dir}"\n')
    shown = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "update", "status", "--updater-config", str(ucfg)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "running release: 0.2.0 (previous: 0.1.0)" in shown.stdout
    assert "0.2.3      rolled_back" in shown.stdout
