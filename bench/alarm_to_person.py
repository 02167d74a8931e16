"""A smoke alarm reaches a person (issue 16): from the MQTT publish of a smoke detector to the provider's API
accepting the first SMS, and from an acknowledgement to the escalation stopped.

The whole path runs as in production, each part its own process: mosquitto, the hub daemon (``kotihub run``, MQTT
driver, store, uplink), the register (``kotihub-register serve`` on SQLite, with its notification dispatcher), and
a local Twilio simulator (in this process) that notes when it accepted each SMS. One household member, a policy of
an SMS at once and calls after 60 s (so every alarm has steps left to cancel).

For each of ``--alarms`` (default 200) alarms, one at a time: publish ``{"smoke": true}`` on the detector's
Zigbee2MQTT topic -> wait until the simulator accepted the SMS (**smoke -> SMS accepted**); then acknowledge through
the household API and time it until the register answered, which it does only after the acknowledgement and the
cancellation of every pending step committed (**ack -> escalation stopped**; the run checks that no step of the
alarm is left pending); then publish the clear. Two cases:

- idle;
- backlog: while ``--hubs`` (default 8) other enrolled hubs push readings batches of ``--batch`` (default 5,000)
  as fast as the register takes them (the register ingesting a large backlog from many hubs).

Targets (the issue): smoke -> SMS p99 < 2 s (EN 50131 allows 10 s), ack -> stopped p99 < 1 s. Printed beside each
figure: the target and the ratio p99 / target. For information, the part of smoke -> SMS spent before the register
stored the alarm.

Run: ``.venv/bin/python bench/alarm_to_person.py [--alarms N] [--hubs N]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import requests
from register_proc import RegisterProcess

from cloud_sync import protocol as p
from cloud_sync.enroll import enroll
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from kotihub_tools.broker import start_mosquitto

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.sirens import bridge_devices

TARGET_SMS_P99_S = 2.0
TARGET_ACK_P99_S = 1.0
PHONE = "+358401110001"
POLICY = {
    "smoke": [{"after_s": 0, "channels": ["sms"]}, {"after_s": 60, "channels": ["voice"], "in_order": True}],
    "desk_after_s": 3600,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class Hub:
    """The hub daemon as a process, provisioned to the register."""

    def __init__(self, root: Path, broker: Any, reg: RegisterProcess, household: str) -> None:
        self.root = root
        self.config = root / "kotihub.toml"
        root.mkdir(parents=True)
        self.config.write_text(
            f'[hub]\nstate_dir = "{root / "state"}"\nruntime_dir = "{root / "run"}"\nlog_level = "warning"\n'
            f'[drivers.mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[uplink]\nenabled = true\nregister_url = "{reg.url}"\nbackoff_initial = 0.05\nbackoff_max = 0.5\n'
        )
        token = reg.cli("enroll-token", "--household", household)
        self._cli("provision", "--register", reg.url, "--token", token, "--ca-file", str(reg.ca_file))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
            stderr=(root / "daemon.log").open("w"),
        )

    def _cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode:
            raise RuntimeError(out.stderr)
        return out.stdout

    def devices(self) -> str:
        try:
            return self._cli("devices", "--json")
        except RuntimeError:
            return ""  # not listening yet

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Backlog:
    """Other hubs pushing readings as fast as the register takes them."""

    def __init__(self, reg: RegisterProcess, root: Path, hubs: int, batch: int) -> None:
        self.reg, self.batch = reg, batch
        self.stop = threading.Event()
        self.sent = 0
        self.identities = [self._enroll(root / f"loadhub{i}") for i in range(hubs)]
        self.threads = [threading.Thread(target=self._push, args=(h,), daemon=True) for h in self.identities]

    def _enroll(self, d: Path) -> tuple[str, Path]:
        household = self.reg.cli("household", "create", "Kuorma")
        return enroll(self.reg.url, self.reg.cli("enroll-token", "--household", household), d,
                      ca_file=self.reg.ca_file).hub_id, d  # fmt: skip

    def _push(self, hub: tuple[str, Path]) -> None:
        hub_id, d = hub
        s = requests.Session()
        s.trust_env = False
        s.cert = (str(d / "hub.crt"), str(d / "hub.key"))
        s.verify = str(d / "register-ca.crt")
        seq = 0
        t0 = 1_760_000_000.0
        while not self.stop.is_set():
            items = [
                p.Item(seq=seq + i, ts=t0 + seq + i, body={"device_id": "mqtt:0xload", "quantity": "temperature",
                                                           "value": 20.0 + (i % 50) / 10, "ts": t0 + seq + i})
                for i in range(self.batch)
            ]  # fmt: skip
            data = p.encode_batch(p.IngestBatch(hub_id=hub_id, lane="readings", items=items))
            r = s.post(f"{self.reg.url}/v1/ingest/readings", data=data, headers=dict(p.INGEST_HEADERS), timeout=120)
            r.raise_for_status()
            seq += self.batch
            self.sent += self.batch

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(180)


def run_case(
    mqtt: paho.Client, sim: TwilioSimulator, reg: RegisterProcess, household: str, token: str, n: int, seed: int
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    s.headers["Authorization"] = f"Bearer {token}"
    db = sqlite3.connect(f"file:{reg.state_dir / 'register.db'}?mode=ro", uri=True, timeout=30)
    out: dict[str, list[float]] = {"sms": [], "ack": [], "stored": []}
    for _ in range(n):
        before = len(sim.sms())
        t0 = time.time()
        mqtt.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": True}), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 30
        while len(sim.sms()) == before:
            if time.monotonic() > deadline:
                raise RuntimeError("no SMS within 30 s")
            time.sleep(0.001)
        sms = sim.sms()[-1]
        out["sms"].append(sms.created - t0)
        alarm_id, received = db.execute(
            "SELECT id, received_at FROM alarms WHERE acked_at IS NULL ORDER BY received_at DESC LIMIT 1"
        ).fetchone()
        out["stored"].append(received - t0)
        a0 = time.perf_counter()
        r = s.post(f"{reg.url}/v1/households/{household}/alarms/{alarm_id}/ack", timeout=30)
        out["ack"].append(time.perf_counter() - a0)
        r.raise_for_status()
        left = db.execute("SELECT count(*) FROM notify_jobs WHERE alarm_id = ? AND state = 'pending'", (alarm_id,))
        if left.fetchone()[0]:
            raise RuntimeError("steps left pending after the acknowledgement")
        mqtt.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": False}), qos=1).wait_for_publish(10)
        time.sleep(rng.uniform(0.05, 0.1))  # pacing between alarms (as alarm_latency.py), not a synchronisation
    db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--hubs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    sim = TwilioSimulator()
    with (
        tempfile.TemporaryDirectory(prefix="bench-person-") as tmp,
        start_mosquitto(Path(tmp) / "mqtt") as broker,
    ):
        root = Path(tmp)
        reg = RegisterProcess(root / "register")
        os.environ.update({**sim.env(), "KOTIHUB_REGISTER_PUBLIC_URL": reg.url})
        reg.start()
        sim.trust(str(reg.ca_file))
        household = reg.cli("household", "create", "Virtanen")
        member = reg.cli("member", "add", household, "Aino", "--recipient",
                         "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")  # fmt: skip
        reg.cli("contact", "set", household, member, "--phone", PHONE)
        (root / "policy.json").write_text(json.dumps(POLICY))
        reg.cli("policy", "set", household, str(root / "policy.json"))
        token = reg.cli("api-token", "--role", "household", "--household", household)
        hub = Hub(root / "hub", broker, reg, household)
        mqtt = paho.Client(paho.CallbackAPIVersion.VERSION2)
        mqtt.connect(broker.host, broker.port)
        mqtt.loop_start()
        try:
            mqtt.publish("zigbee2mqtt/bridge/devices", bridge_devices(), qos=1, retain=True).wait_for_publish(10)
            deadline = time.monotonic() + 120
            while "0x00158d0001a2b3c5" not in hub.devices():  # the daemon is up and has read the device list
                if time.monotonic() > deadline:
                    raise RuntimeError("the hub daemon did not come up")
                time.sleep(0.2)
            run_case(mqtt, sim, reg, household, token, 3, 0)  # TLS sessions and connections up; not counted
            results = {"idle": run_case(mqtt, sim, reg, household, token, args.alarms, 1)}
            load = Backlog(reg, root, args.hubs, args.batch)
            load.start()
            time.sleep(1)
            sent_before = load.sent
            t = time.perf_counter()
            results["backlog"] = run_case(mqtt, sim, reg, household, token, args.alarms, 2)
            rate = (load.sent - sent_before) / (time.perf_counter() - t)
            load.finish()
        finally:
            mqtt.loop_stop()
            hub.stop()
            reg.stop()
            sim.close()

    print(f"alarms: {args.alarms} per case, one at a time; backlog: {args.hubs} hubs pushing {args.batch:,}-reading "
          f"batches, {rate:,.0f} readings/s ingested meanwhile; register on SQLite, own process; measured under the "
          "machine's load at the time")  # fmt: skip
    print()
    print(f"{'':<34}{'p50 s':>8}{'p99 s':>8}{'max s':>8}{'target p99':>12}{'ratio':>7}")
    for name in ("idle", "backlog"):
        r = results[name]
        for key, label, target in (("sms", "smoke -> SMS accepted", TARGET_SMS_P99_S),
                                   ("ack", "ack -> escalation stopped", TARGET_ACK_P99_S)):  # fmt: skip
            v = r[key]
            print(f"{name + ': ' + label:<34}{statistics.median(v):>8.3f}{pct(v, 99):>8.3f}{max(v):>8.3f}"
                  f"{'< ' + str(target):>12}{pct(v, 99) / target:>7.2f}")  # fmt: skip
    print()
    for name in ("idle", "backlog"):
        v = results[name]["stored"]
        print(f"for information, {name}: smoke -> alarm stored in the register p50 {statistics.median(v):.3f} s, "
              f"p99 {pct(v, 99):.3f} s (the rest is planning, claiming and the provider's API)")  # fmt: skip


if __name__ == "__main__":
    main()
