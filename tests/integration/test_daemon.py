"""The daemon as a subprocess against a real mosquitto: CLI over its socket, SIGTERM, SIGKILL, broker restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import crypto
from gateway.control import ControlError, call
from gateway.store import Store
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class HubProcess:
    def __init__(self, root: Path, broker: MosquittoBroker, extra_config: str = "") -> None:
        self.root = root
        self.state = root / "state"
        self.config = root / "kotihub.toml"
        self.socket = root / "run" / "control.sock"
        self.config.write_text(
            f'[hub]\nstate_dir = "{self.state}"\nruntime_dir = "{root / "run"}"\nlog_level = "debug"\n'
            "[store]\ncommit_interval = 0.2\n"
            f'[drivers.mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nreconnect_min = 0.1\nreconnect_max = 0.5\n'
            + extra_config
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        # A file, not a pipe: a daemon logging at DEBUG would block once an unread pipe filled up.
        self.log = self.root / "daemon.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
            cwd=REPO,
            stderr=self.log.open("w"),
            text=True,
        )
        wait_until(lambda: self.cli("status").returncode == 0, what="the daemon's control socket")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stop(self, sig: int) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=15)
        return self.proc.returncode, self.log.read_text()


@pytest.fixture
def hub(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path, mosquitto)
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def stored(state: Path) -> tuple[list[Any], list[Any]]:
    store = Store.open(state, crypto.load_master_key(state, create=False), crypto.Algorithm.AES_256_GCM)
    readings = [r for _, r in store.iter_readings()]
    alarms = list(store.iter_items("alarm"))
    return readings, alarms


def test_cli_without_a_daemon_says_so_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--socket", str(tmp_path / "nope.sock")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "not running" in result.stderr


def test_devices_readings_and_alarm_through_the_daemon(hub: HubProcess, mosquitto: MosquittoBroker) -> None:
    scene = asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    assert scene
    devices = wait_until(lambda: len(hub.cli_json("devices")) >= 4 and hub.cli_json("devices"), what="devices")
    kinds = {d["kind"] for d in devices}
    assert {"sensor", "smoke_detector"} <= kinds
    status = wait_until(
        lambda: (s := hub.cli_json("status"))["counters"]["readings_accepted"] > 0 and s, what="readings"
    )
    assert status["drivers"]["mqtt"]["state"] == "running"
    table = hub.cli("devices")
    assert table.returncode == 0
    assert "smoke_detector" in table.stdout
    code, err = hub.stop(signal.SIGTERM)
    assert code == 0, err
    assert "stopped; the store is flushed" in err
    readings, alarms = stored(hub.state)
    assert len(readings) >= status["counters"]["readings_accepted"]
    assert any(a.body["kind"] == "smoke" for a in alarms)


def test_socket_mode_and_restrict_and_rename_are_audited(hub: HubProcess, mosquitto: MosquittoBroker) -> None:
    assert oct(hub.socket.stat().st_mode & 0o777) == "0o660"
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    devices = wait_until(lambda: hub.cli_json("devices"), what="devices")
    target = devices[0]["device_id"]
    renamed = hub.cli_json("rename", target, "--name", "Keittiö", "--room", "keittiö")
    assert renamed["name"] == "Keittiö"
    assert hub.cli_json("restrict", "sensors", "on") == ["sensors"]
    refused = hub.cli("restrict", "nonsense", "on")  # the CLI refuses it and lists what it accepts
    assert refused.returncode == 2
    assert "choose from 'sensors', 'alarms', 'camera'" in refused.stderr
    with pytest.raises(ControlError):  # and so does the daemon, asked directly
        call(hub.socket, "restrict", {"category": "nonsense", "on": True, "actor": "test"})
    before = hub.cli_json("status")["counters"]
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port, seed=1))
    after = wait_until(
        lambda: (c := hub.cli_json("status")["counters"])["readings_restricted"] > before["readings_restricted"] and c,
        what="restricted readings to be counted",
    )
    assert after["readings_accepted"] == before["readings_accepted"]
    hub.stop(signal.SIGTERM)
    store = Store.open(hub.state, crypto.load_master_key(hub.state, create=False), crypto.Algorithm.AES_256_GCM)
    actions = [(a.action, a.subject) for a in store.iter_audit()]
    assert ("rectify", target) in actions
    assert ("restrict", "sensors") in actions


def test_sigkill_loses_nothing_accepted_and_broker_restart_is_survived(
    hub: HubProcess, mosquitto: MosquittoBroker
) -> None:
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: hub.cli_json("status")["counters"]["readings_accepted"] > 0, what="first readings")
    mosquitto.restart()
    first = hub.cli_json("status")["counters"]["readings_accepted"]
    # After the restart the driver reconnects by itself; a new scene must arrive.
    wait_until(
        lambda: (
            asyncio.run(publish_scene(mosquitto.host, mosquitto.port, seed=2))
            and hub.cli_json("status")["counters"]["readings_accepted"] > first
        ),
        timeout=30,
        what="readings after the broker restart",
    )
    accepted = hub.cli_json("status")["counters"]["readings_accepted"]
    code, _ = hub.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    readings, _ = stored(hub.state)
    assert len(readings) >= accepted
    assert os.path.exists(hub.state / "kotihub.db")


def test_export_erase_and_retention_from_the_cli(hub: HubProcess, mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    import zipfile

    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    devices = wait_until(lambda: len(hub.cli_json("devices")) >= 4 and hub.cli_json("devices"), what="devices")
    wait_until(lambda: hub.cli_json("status")["counters"]["readings_accepted"] > 0, what="readings")
    out = tmp_path / "minun-tietoni.zip"
    exported = hub.cli_json("export", "--out", str(out))
    assert exported["counts"]["devices"] >= len(devices)
    with zipfile.ZipFile(out) as zf:
        assert "manifest.json" in zf.namelist()
    target = devices[0]["device_id"]
    refused = hub.cli("erase", "--device", target)  # no terminal, no --yes: nothing happens
    assert refused.returncode == 1
    receipt = hub.cli_json("erase", "--device", target, "--yes")
    assert receipt["receipt"]["target"] == target
    assert target not in [d["device_id"] for d in hub.cli_json("devices")]
    retention = hub.cli_json("retention")
    assert retention["days"] == 183
    assert set(retention["due"]) == {"days", "readings", "items"}
    # What people read: counts in words, no Python dicts; sizes in the units selftest uses.
    again = hub.cli("export", "--out", str(tmp_path / "again.zip"))
    assert again.returncode == 0, again.stderr
    assert re.search(r": \d+ readings, \d+ events, \d+ devices", again.stdout), again.stdout
    erased = hub.cli("erase", "--device", devices[1]["device_id"], "--yes")
    assert erased.returncode == 0, erased.stderr
    counts = r": \d+ readings, \d+ items, 1 devices, \d+ clip files, \d+ driver records, \d+ exports\nreceipt "
    assert re.search(counts, erased.stdout), erased.stdout
    for text in (again.stdout, erased.stdout, hub.cli("retention").stdout, hub.cli("status").stdout):
        assert "{" not in text and "'" not in text, text
    assert re.search(r"\d+\.\d (KiB|MiB|GiB) used, \d+\.\d (MiB|GiB|TiB) free", hub.cli("status").stdout)


def test_selftest_speaks_finnish_and_english(hub: HubProcess, mosquitto: MosquittoBroker) -> None:
    wait_until(lambda: hub.cli_json("status")["drivers"]["mqtt"].get("connected"), what="MQTT connection")
    fi = hub.cli("selftest", "--lang", "fi")
    en = hub.cli("selftest", "--lang", "en")
    assert fi.returncode == 0, fi.stdout
    assert "kotihubin itsetestaus" in fi.stdout
    assert "MQTT-välittäjä tavoitettavissa" in fi.stdout
    assert "MQTT broker reachable" in en.stdout
    assert "kotihub provision" in en.stdout  # not provisioned: a warning with what to do
    checks = {c["check"]: c["status"] for c in hub.cli_json("selftest")}
    assert checks["master_key"] == "ok"
    assert checks["mqtt"] == "ok"
    assert checks["register"] == "warn"
    mosquitto.stop()
    down = wait_until(
        lambda: (r := hub.cli("selftest", "--lang", "en")).returncode == 1 and r, what="the broker failure"
    )
    assert "MQTT broker not reachable" in down.stdout


def test_diag_bundle_holds_no_personal_data(hub: HubProcess, mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    import zipfile

    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    devices = wait_until(lambda: len(hub.cli_json("devices")) >= 4 and hub.cli_json("devices"), what="devices")
    planted = {"Matti Meikäläinen": devices[0]["device_id"], "Makuuhuone 2": devices[1]["device_id"]}
    hub.cli_json("rename", devices[0]["device_id"], "--name", "Matti Meikäläinen")
    hub.cli_json("rename", devices[1]["device_id"], "--room", "Makuuhuone 2")
    out = tmp_path / "diag.zip"
    result = hub.cli("diag", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as zf:
        text = "".join(zf.read(n).decode() for n in zf.namelist())
    bundle = json.loads(zipfile.ZipFile(out).read("bundle.json"))
    assert bundle["status"]["counters"]["readings_accepted"] >= 0
    assert len(bundle["devices"]) == len(hub.cli_json("devices"))
    forbidden = [*planted, "127.0.0.1", str(hub.state)]
    for d in devices:
        forbidden += [d["device_id"], d["device_id"].split(":", 1)[1]]
        if d["name"]:
            forbidden.append(d["name"])
    for secret in forbidden:
        assert secret not in text, f"{secret!r} leaked into the support bundle"
    assert "<device:" in text, "devices should appear as keyed hashes"
