"""Remote configuration end to end: the operator pushes a kotihub.toml through the register (checked with
`kotihub config check`'s schema there), the hub's updater checks it again, puts it in place atomically, restarts
the real daemon, keeps it when healthy and puts the old file back when not; the store is never touched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloud_sync.register import config_push
from cloud_sync.register.errors import Invalid
from gateway.control import call
from kotihub_tools.broker import MosquittoBroker
from tests.integration.test_daemon import wait_until
from tests.support.register import RunningRegister
from tests.support.updates import DaemonService, provision_hub
from updater import health
from updater.cli import configure_once, make_configurer

WINDOW_S = 12.0


def _pushes(register: RunningRegister) -> dict[str, tuple[str, str]]:
    return {p["id"]: (p["state"], p["detail"]) for p in config_push.pushes(register.reg, actor="test:read")}


def test_a_pushed_configuration_is_kept_when_healthy_and_reverted_when_not(
    tmp_path: Path, register: RunningRegister, mosquitto: MosquittoBroker
) -> None:
    hub = provision_hub(tmp_path, register, mosquitto, window_s=WINDOW_S)
    service = DaemonService(
        tmp_path, hub.config, tmp_path / "daemon.log", command=[sys.executable, "-m", "gateway.cli"]
    )
    service.restart()
    try:
        configurer = make_configurer(hub.updater_cfg, service=service)
        configurer.poll_s = 0.3
        wait_until(lambda: configurer.look(0).healthy, timeout=30, what="the daemon healthy before any push")
        original = hub.config.read_text()
        store_files = sorted(p.name for p in hub.state.iterdir())

        # Refused by the register before any hub sees it: the same rules as `kotihub config check`.
        for bad, why in (("[hub]\nnmae = 'x'\n", "hub.nmae"), ("[store\n", "not valid TOML"),
                         ("[drivers.mqtt]\npassword = 'x'\n", "password")):  # fmt: skip
            with pytest.raises(Invalid, match=why):
                config_push.push(register.reg, bad, actor="test:operator", hubs=[hub.hub_id])
        assert config_push.pending(register.reg, hub.hub_id).push_id is None

        # A good change: a new hub name. Applied, the daemon restarted with it, healthy: kept.
        good = original.replace("[hub]\n", '[hub]\nname = "olohuone"\n', 1)
        [good_id] = config_push.push(register.reg, good, actor="test:operator", hubs=[hub.hub_id])
        assert configure_once(hub.updater_cfg, configurer) == "applied"
        assert hub.config.read_text() == good
        assert call(hub.socket, "status")["hub"]["name"] == "olohuone"
        assert _pushes(register)[good_id][0] == "applied"

        # Valid, but the hub cannot reach the register with it: not healthy within the window, put back.
        broken = good.replace(register.url, "https://127.0.0.1:9", 1)
        [broken_id] = config_push.push(register.reg, broken, actor="test:operator", percent=100)
        assert configure_once(hub.updater_cfg, configurer) == "reverted"
        assert hub.config.read_text() == good
        state, detail = _pushes(register)[broken_id]
        # (The daemon's own selftest FAILs its register check first; either way the register was not reached.)
        assert state == "reverted" and "register" in detail
        wait_until(lambda: configurer.look(0).healthy, timeout=30, what="healthy again on the old configuration")

        # One that would move the store is refused on the hub (the register cannot know the hub's state_dir).
        moved = good.replace(str(hub.state), str(tmp_path / "elsewhere"), 1)
        [moved_id] = config_push.push(register.reg, moved, actor="test:operator", hubs=[hub.hub_id])
        assert configure_once(hub.updater_cfg, configurer) == "refused"
        assert _pushes(register)[moved_id][0] == "refused"
        assert hub.config.read_text() == good

        # Nothing pending: nothing done. The store's files are the same ones throughout.
        assert configure_once(hub.updater_cfg, configurer) is None
        assert sorted(p.name for p in hub.state.iterdir()) == store_files
        actions = [e["action"] for e in register.reg.audit_entries()]
        assert actions.count("config.push") == 3 and actions.count("config.outcome") == 3
        assert health.probe(hub.socket, version=configurer_version(), require_uplink=True, since=0).healthy
    finally:
        service.stop()


def configurer_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("kotihub")
