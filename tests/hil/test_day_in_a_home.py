"""Hardware in the loop: a scripted day in a home, every driver's simulator speaking its real protocol.

Discovery, readings, a smoke alarm and the clip it triggers (decrypted by a household member from the register's
copy), an outage of the uplink, a reboot, a retention run and an erasure the household asks for through the
register. With ``KOTIHUB_BENCH_FILE`` describing real devices, ``tests/hil/test_bench.py`` runs against them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest
import requests

from cloud_sync.enroll import enroll
from drivers.ble.driver import BleConfig, BleDriver
from gateway import config as configuration
from gateway import crypto
from gateway.daemon import Daemon
from gateway.errors import DecryptError
from gateway.model import Quantity, Reading, SmokeState
from gateway.store import Store
from gateway.store.clips import decrypt_clip
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.ble_replay import RecordedCredentials, replay
from kotihub_tools.simulators.camera import MARKER, SimulatedCamera
from kotihub_tools.simulators.miio import DEMO_SMOKE_SID, MiioSimulator, SimulatedGateway, demo_table
from kotihub_tools.simulators.mqtt import publish_scene
from tests.support.register import RunningRegister
from tests.support.tcpproxy import fault_proxy

DAY = 86_400.0


async def until(predicate: Callable[[], Any], timeout: float = 45.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def seed_old_readings(state: Path) -> int:
    """Readings from 200 days ago, as if the hub had run all along; retention must destroy them."""

    async def run() -> int:
        key = crypto.load_master_key(state)
        async with Store.open(state, key, crypto.choose_algorithm("auto")) as store:
            old = time.time() - 200 * DAY
            return await store.add_readings(
                [Reading("mqtt:0xold", Quantity.TEMPERATURE, 19.5, old + i) for i in range(50)]
            )

    return asyncio.run(run())


async def test_a_day_in_a_home(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister, ram_dir: Path
) -> None:
    state = tmp_path / "state"
    household = register.create_household("Virtanen")
    _, identity = register.add_member(household, "Aino")
    identity_file = tmp_path / "aino.key"
    identity_file.write_text(identity)
    app_token = register.api_token("household", household)
    await asyncio.to_thread(seed_old_readings, state)
    token = os.urandom(16)
    (state / "credentials").mkdir(mode=0o700)
    (state / "credentials" / "miio.token.127.0.0.1").write_text(token.hex())
    (state / "credentials" / "miio.token.127.0.0.1").chmod(0o600)

    with fault_proxy(register.port) as proxy:
        await asyncio.to_thread(
            enroll,
            proxy.url,
            register.enroll_token(household),
            state,
            ca_file=register.ca_file,
            hub_name="koti",
            pairing_code=register.pairing_code(household),
        )
        gateway = SimulatedGateway.demo(token)
        async with MiioSimulator(gateway, host="127.0.0.1", port=0) as miio, SimulatedCamera(mdns_enabled=False) as cam:
            raw: dict[str, Any] = {
                "hub": {"name": "koti", "state_dir": str(state), "runtime_dir": str(tmp_path / "run")},
                "store": {"commit_interval": 0.1},
                "uplink": {"enabled": True, "register_url": proxy.url, "backoff_initial": 0.05, "backoff_max": 0.5,
                           "command_poll_wait": 1.0, "readings_linger_s": 5.0},
                "drivers": {
                    "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                    "miio": demo_table(miio.port, poll_interval=1.0),
                    "camera": {
                        "mdns": False, "wsdiscovery": False, "buffer_dir": str(ram_dir / "ring"),
                        "cameras": [{"name": "hall", "stream_url": cam.stream_url, "native_id": cam.mac,
                                     "pre_roll_s": 1.0, "post_roll_s": 1.0, "segment_s": 1.0, "stall_s": 4.0}],
                    },
                },
            }  # fmt: skip
            cfg = configuration.parse(raw)

            async with asyncio.TaskGroup() as tg:
                # Morning: the hub starts and finds the home's devices.
                daemon = Daemon(cfg)
                running = tg.create_task(daemon.run())
                await daemon.ready.wait()
                assert daemon.hub is not None and daemon.uplink is not None
                hub = daemon.hub
                stop_ble = asyncio.Event()
                every = BleConfig(adopt=("*",))
                ble = tg.create_task(replay(BleDriver(every, RecordedCredentials()), hub, stop=stop_ble,
                                            interval=0.2, rounds=1))  # fmt: skip
                await publish_scene(mosquitto.host, mosquitto.port)
                drivers = await until(
                    lambda: {d.info.driver for d in hub.devices.values()} >= {"mqtt", "miio", "camera", "ble"} and True,
                    what="devices of every driver",
                )
                assert drivers
                await asyncio.wait_for(ble, timeout=60)
                hub_id = daemon.uplink.hub_id
                await until(lambda: register.items(hub_id, "readings"), what="readings at the register")

                # Noon: smoke in the kitchen. The alarm reaches the register and the hall camera records a clip.
                gateway.smoke(DEMO_SMOKE_SID, SmokeState.SMOKE)
                await until(
                    lambda: [b for _, b in register.items(hub_id, "alarm") if b["state"] == "smoke"], what="the alarm"
                )
                clip = (await until(lambda: register.items(hub_id, "clips"), timeout=60, what="the clip record"))[0][1]
                session = requests.Session()
                session.trust_env = False
                session.verify = str(register.ca_file)
                url = f"{register.url}/v1/households/{household}/clips/{clip['clip_id']}"
                ciphertext = (await until(
                    lambda: (r := session.get(url, headers={"Authorization": f"Bearer {app_token}"}, timeout=10)).ok
                    and r.content, what="the clip upload",
                ))  # fmt: skip
                assert MARKER not in ciphertext
                sealed = tmp_path / "clip.age"
                sealed.write_bytes(ciphertext)
                video = tmp_path / "clip.mp4"
                decrypt_clip(identity_file, sealed, video)
                probe = await asyncio.to_thread(
                    subprocess.run,
                    ["ffprobe", "-v", "error", "-show_entries", "format=duration,format_name", "-of", "json",
                     str(video)],
                    check=True, capture_output=True, timeout=30,
                )  # fmt: skip
                found = json.loads(probe.stdout)["format"]
                assert found["format_name"] == "mov,mp4,m4a,3gp,3g2,mj2", "the browser-playable clip"
                assert float(found["duration"]) >= 1.0
                wrong = pyrage.x25519.Identity.generate()
                (tmp_path / "other.key").write_text(str(wrong))
                with pytest.raises(DecryptError):
                    decrypt_clip(tmp_path / "other.key", sealed, tmp_path / "nope.mp4")

                # Afternoon: the uplink is down; the hub keeps everything and sends it when it is back.
                proxy.down = True
                proxy.cut_all()
                await publish_scene(mosquitto.host, mosquitto.port, seed=3)
                await until(lambda: daemon.uplink is not None and daemon.uplink.status["readings"].last_error,
                            what="the outage to be noticed")  # fmt: skip
                store = daemon.store
                assert store is not None
                await until(lambda: _waiting(store), what="readings kept on the hub during the outage")
                proxy.down = False
                await until(_sent_through(store, _newest(store)), what="the backlog to drain")

                # Evening: a reboot. Nothing known is forgotten.
                known = set(hub.devices)
                daemon.stop.set()
                await asyncio.wait_for(running, timeout=30)
                daemon = Daemon(cfg)
                running = tg.create_task(daemon.run())
                await daemon.ready.wait()
                assert daemon.hub is not None
                assert set(daemon.hub.devices) == known

                # Night: retention destroys the 200-day-old readings and keeps today's.
                assert daemon.retention is not None and daemon.store is not None
                report = await daemon.retention.run_once(force_time=True)
                assert report.epochs_shredded >= 1
                left = [r for _, r in daemon.store.iter_readings(skip_destroyed=True)]
                assert left and all(r.device_id != "mqtt:0xold" for r in left)

                # The household asks the register to erase everything; the register erases its copy and the hub
                # carries out the erasure it is sent.
                from cloud_sync.register.retention import erase_household

                erased_at = time.time()
                erase_household(register.reg, household, actor="household-app")
                await until(
                    lambda: [
                        c for c in register.reg.commands(household) if c["kind"] == "erase" and c["status"] == "done"
                    ],
                    what="the hub's erasure and its receipt",
                )
                assert [r for _, r in daemon.store.iter_readings(skip_destroyed=True) if r.ts < erased_at] == []
                # What the hub still had in its outbox when the household erased is never stored again.
                await until(_sent_through(daemon.store, _newest(daemon.store)), what="the outbox to drain")
                assert [b for _, b in register.items(hub_id, "readings") if b["ts"] < erased_at] == []
                daemon.stop.set()
                await asyncio.wait_for(running, timeout=30)


async def _waiting(store: Store) -> bool:
    return (await store.depth())["readings"] > 0


def _newest(store: Store) -> dict[str, int]:
    """The newest readings and alarm seqs committed now."""
    return {lane: store.newest_seq(lane) for lane in ("readings", "alarm")}


def _sent_through(store: Store, newest: dict[str, int]) -> Callable[[], bool]:
    """Whether the register acknowledged everything up to ``newest``. Not 'the outbox is empty': the home's sensors
    keep committing readings, which linger for company (uplink.readings_linger_s), so an empty outbox is a moment
    between two commits that a poll may never see."""
    return lambda: all(store.synced_seq(lane) >= seq for lane, seq in newest.items())
