"""The whole path in a home: the daemon (a real process) with a siren relay and the MQTT detectors, the register
with its dispatcher, the Twilio simulator and an SMTP server. The uplink is down when the smoke starts: the siren
sounds at once all the same, and the messages go out when the hub reconnects, marked late; the member's
acknowledgement at the register silences the siren at home."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import requests
from aiosmtpd.controller import Controller

from cloud_sync.register.notify import alarms, contacts, dispatch
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from tests.integration.test_hub_register import SyncedHub
from tests.support.notify import FAST_POLICY, PHONES, Mailbox, notify_env, wait_for
from tests.support.register import RunningRegister
from tests.support.sirens import bridge_devices
from tests.support.tcpproxy import fault_proxy

SIREN = '[[drivers.mqtt.sirens]]\nfamily = "tasmota"\ntopic = "siren-hall"\n'


class Listener:
    """Records siren commands with their arrival time (a plain MQTT client in a thread)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.got: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("cmnd/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self.got.append((time.monotonic(), msg.topic, bytes(msg.payload)))

    def since(self, t: float) -> list[bytes]:
        with self._lock:
            return [p for at, topic, p in self.got if at >= t and topic == "cmnd/siren-hall/POWER"]

    def first_after(self, t: float) -> float:
        with self._lock:
            return min(at for at, topic, _ in self.got if at >= t)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mosquitto: MosquittoBroker,
    twilio_sim: TwilioSimulator,
    smtp_server: tuple[Controller, Mailbox],
) -> Iterator[dict[str, Any]]:
    state = tmp_path / "register"
    state.mkdir()
    reg = RunningRegister(state)
    for k, v in notify_env(reg.url, reg.ca_file, twilio_sim, smtp_server[0].port).items():
        monkeypatch.setenv(k, v)
    # Late after 1 s instead of 30, so the test need not keep the uplink down for half a minute.
    monkeypatch.setattr(alarms, "LATE_AFTER_S", 1.0)
    reg.start()
    twilio_sim.trust(str(reg.ca_file))
    _, halt = dispatch.start(reg.reg, NotifyConfig.from_env(), poll_s=0.2)
    listener = Listener(mosquitto)
    with fault_proxy(reg.port) as proxy:
        household = reg.create_household("Virtanen")
        members = []
        for i, name in enumerate(("Aino", "Eero")):
            mid, _ = reg.add_member(household, name)
            contacts.set_contact(reg.reg, household, mid, contacts.Contact(phone=PHONES[i], call_order=i), actor="t")
            members.append(mid)
        contacts.set_policy(reg.reg, household, FAST_POLICY, actor="t")
        hub = SyncedHub(tmp_path, mosquitto, proxy.url)
        with hub.config.open("a") as f:
            f.write(SIREN)
        code = reg.pairing_code(household)
        assert code is not None
        r = hub.cli("provision", "--register", proxy.url, "--token", reg.enroll_token(household), "--ca-file",
                    str(reg.ca_file), "--pairing-code", code)  # fmt: skip
        assert r.returncode == 0, r.stderr
        hub.start()
        try:
            yield {"reg": reg, "hub": hub, "proxy": proxy, "listener": listener, "household": household,
                   "members": members}  # fmt: skip
        finally:
            if hub.proc is not None and hub.proc.poll() is None:
                hub.stop(signal.SIGTERM)
            listener.close()
            halt()
            reg.close()


def test_uplink_down_sirens_sound_then_messages_go_out_late_and_the_ack_silences_the_siren(
    home: dict[str, Any], twilio_sim: TwilioSimulator
) -> None:
    reg: RunningRegister = home["reg"]
    hub: SyncedHub = home["hub"]
    listener: Listener = home["listener"]
    hub_id = HubIdentity(hub.state).hub_id()
    listener.publish("zigbee2mqtt/bridge/devices", bridge_devices(), retain=True)
    wait_for(lambda: len(hub.cli_json("devices")) >= 4, 30, "the two detectors and two sirens")
    wait_for(lambda: reg.reg.hubs(home["household"])[0]["last_seen"], 30, "the hub to sync once")

    home["proxy"].down = True
    home["proxy"].cut_all()
    smoke_at = time.monotonic()
    listener.publish("zigbee2mqtt/smoke_kitchen", json.dumps({"smoke": True}).encode())
    wait_for(lambda: listener.since(smoke_at) == [b"ON"], 5, "the siren to sound without the uplink")
    assert listener.first_after(smoke_at) - smoke_at < 0.5
    # Nothing can reach anyone while the uplink is down (the hub keeps the alarm in its outbox).
    wait_for(lambda: hub.cli_json("sync")["lanes"]["alarm"]["last_error"], 30, "the hub to notice the outage")
    time.sleep(1.5)  # the scenario: the outage lasts longer than LATE_AFTER_S (1 s). Not a synchronisation.
    assert twilio_sim.sms() == []

    home["proxy"].down = False
    wait_for(lambda: len(twilio_sim.sms()) == 2, 60, "the SMS after reconnecting")
    assert sorted(m.to for m in twilio_sim.sms()) == sorted(PHONES)
    for m in twilio_sim.sms():
        assert "(myöhässä)" in m.body, m.body
    with reg.reg.engine.connect() as conn:
        history = alarms.history(conn, home["household"])
    assert history[0]["late"] is True and history[0]["hub_id"] == hub_id

    # Aino acknowledges through the household API: escalation stops and the siren at home goes quiet.
    acked_at = time.monotonic()
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    token = reg.api_token("household", home["household"])
    r = s.post(
        f"{reg.url}/v1/households/{home['household']}/alarms/{history[0]['id']}/ack",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: listener.since(acked_at) == [b"OFF"], 30, "the siren silenced by the acknowledgement")
    wait_for(
        lambda: [c for c in reg.reg.commands(home["household"]) if c["kind"] == "alarm_ack" and c["status"] == "done"],
        30,
        "the hub's receipt of the acknowledgement",
    )
