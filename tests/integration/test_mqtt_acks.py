"""The device leg under fire: the daemon SIGKILLed 30 times while a Zigbee2MQTT-style device publishes QoS 1.

The publisher records every message the broker acknowledged. The hub acknowledges to the broker only after its
commit, so whatever the broker handed over survives the kills: at the end every acknowledged reading is in the store
exactly once (a redelivery after a lost PUBACK is recognised), under the device's real IEEE id, and the smoke
detector's last stored state is the last one published.
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway import crypto
from gateway.control import ControlError, DaemonUnreachable, call
from gateway.model import Reading
from gateway.store import OutboxItem, Store
from kotihub_tools.broker import MosquittoBroker, start_mosquitto
from kotihub_tools.simulators import mqtt as sim
from tests.integration.test_daemon import REPO, HubProcess, wait_until

KILLS = 30
# As scripts/install configures it: a dead hub's backlog must stay queued, not be dropped at mosquitto's 1,000.
BROKER = "allow_anonymous true\nmax_queued_messages 100000\n"


def _pressure(seq: int) -> float:
    return 500.0 + seq / 100  # every message carries its sequence number in a value the decoder keeps


class Publisher:
    """A device publishing QoS 1 readings (and now and then a smoke transition) in its own thread."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.acked: list[int] = []
        self.smoke_acked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="publisher")
        self.error: BaseException | None = None

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        home = sim.SimulatedHome(seed=5)
        topic = f"{sim.Z2M}/{sim.AQARA_NAME}"
        try:
            async with aiomqtt.Client(self.broker.host, self.broker.port, identifier="device-under-test") as client:
                await sim.publish(client, home.announce())
                seq = 0
                while not self._stop.is_set():
                    seq += 1
                    payload = b'{"linkquality": 70, "pressure": %r}' % _pressure(seq)
                    await client.publish(topic, payload, qos=1)  # returns once the broker's PUBACK came
                    self.acked.append(seq)
                    if seq % 97 == 0:
                        state: sim.SmokeScript = "smoke" if home.smoke_state != "smoke" else "clear"
                        message = home.smoke(state)
                        await client.publish(message.topic, message.payload, qos=1)
                        self.smoke_acked.append(state)
                    await asyncio.sleep(0.004)  # pacing (~200 messages/s), not synchronisation
        except BaseException as exc:
            self.error = exc
            raise


def _status(hub: HubProcess) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = call(hub.socket, "status", timeout=10)
    except (DaemonUnreachable, ControlError, OSError):
        return None
    return result


def _start(hub: HubProcess) -> None:
    hub.log = hub.root / "daemon.log"
    hub.proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(hub.config)],
        cwd=REPO,
        stderr=hub.log.open("a"),
        text=True,
    )
    wait_until(lambda: _status(hub), timeout=60, what="the daemon's control socket")


def stored(state: Path) -> tuple[list[Reading], list[OutboxItem]]:
    store = Store.open(state, crypto.load_master_key(state, create=False), crypto.Algorithm.AES_256_GCM)
    try:
        return [r for _, r in store.iter_readings()], list(store.iter_items("alarm"))
    finally:
        asyncio.run(store.close())


SENTINEL_ID = "mqtt:tasmota:sentinel"


async def _publish_sentinel(broker: MosquittoBroker) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="sentinel") as client:
        await client.publish("tele/sentinel/LWT", b"Online", qos=1)


def _devices(hub: HubProcess) -> set[str]:
    try:
        return {d["device_id"] for d in call(hub.socket, "devices", timeout=10)}
    except (DaemonUnreachable, ControlError, OSError):
        return set()


def _accepted(hub: HubProcess) -> int:
    status = _status(hub)
    return int(status["counters"]["readings_accepted"]) if status else 0


def _kill(hub: HubProcess) -> None:
    assert hub.proc is not None
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait(timeout=15)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with start_mosquitto(tmp_path / "mosquitto", extra_config=BROKER) as running:
        yield running


def test_sigkill_30_times_every_acknowledged_reading_stored_once_under_its_real_id(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    hub = HubProcess(tmp_path, broker, extra_config="")
    rng = random.Random(11)
    try:
        # First start: the broker learns the hub's persistent session; killed before any device list exists, so
        # the next start meets a backlog of names it cannot resolve yet (they must be held, not invented).
        _start(hub)
        wait_until(lambda: (_status(hub) or {}).get("drivers", {}).get("mqtt", {}).get("connected"), what="connect")
        _kill(hub)
        with Publisher(broker) as publisher:
            wait_until(lambda: len(publisher.acked) >= 200, what="a backlog while the hub is down")
            for _ in range(KILLS):
                _start(hub)
                target = rng.randint(1, 120)
                wait_until(lambda t=target: _accepted(hub) >= t, timeout=60, what="readings before the kill")
                _kill(hub)
            assert publisher.error is None
        acked = list(publisher.acked)
        smoke = list(publisher.smoke_acked)
        # A last message after everything else: once the hub knows its device, the backlog before it is handled.
        asyncio.run(_publish_sentinel(broker))
        _start(hub)
        wait_until(lambda: SENTINEL_ID in _devices(hub), timeout=90, what="the backlog drained")
        code, log = hub.stop(signal.SIGTERM)
        assert code == 0, log[-2000:]
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            _kill(hub)

    readings, alarms = stored(hub.state)
    devices = {r.device_id for r in readings}
    assert devices <= {sim.AQARA_ID, sim.SMOKE_ID}, f"readings under invented ids: {devices}"
    seqs = collections.Counter(
        round((r.value - 500.0) * 100) for r in readings if r.device_id == sim.AQARA_ID and r.quantity == "pressure"
    )
    lost = [s for s in acked if seqs[s] == 0]
    twice = {s: n for s, n in seqs.items() if n > 1}
    assert not lost, f"{len(lost)} acknowledged readings lost, first {lost[:10]}"
    assert not twice, f"{len(twice)} readings stored more than once: {list(twice.items())[:10]}"
    assert set(seqs) == set(acked)
    assert {a.body["device_id"] for a in alarms} == {sim.SMOKE_ID}
    assert smoke, "the publisher sent smoke transitions"
    assert alarms[-1].body["state"] == smoke[-1]
