"""``kotihub demo``: the hub on one machine with no hardware and no root.

It starts a private mosquitto, the daemon with a temporary state directory, simulated MQTT devices (real Zigbee2MQTT,
Tasmota, Shelly and Home Assistant payloads, and a smoke detector that goes into alarm and back), a simulated
Xiaomi gateway speaking the real miio protocol over UDP on 127.0.0.1, and recorded Bluetooth advertisements of real
sensors fed through the BLE driver's scanner callback; prints what happens live and a summary at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from gateway import config as configuration
from gateway.control_api import Args
from gateway.daemon import Daemon
from gateway.model import DeviceInfo, Event, EventKind
from kotihub_tools.demo_alarm import SIREN_RELAY, AlarmDemo


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


REGISTER_POLL_S = 1.0
"""The demo hub's command long-poll: short, so that stopping the register never waits on (or cuts) a held request."""


class _Narrated(logging.Filter):
    """Drops the log lines that the demo says in its own words, so each thing is said once: the hub's smoke-alarm
    warning (the narrator prints the alarm and when it reached the register), the sirens' and the register's
    notification plan (it says when the sirens sound and who was told) and retention waiting for a trusted
    clock (normal on a machine the register has not yet confirmed the time of; the demo explains it at start)."""

    NARRATED = (
        ("gateway.hub", "SMOKE ALARM"),
        ("gateway.sirens", "sirens "),
        ("cloud_sync.register.notify.alarms", "smoke alarm opened"),
        ("gateway.retention", "retention is waiting"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == name and str(record.msg).startswith(start) for name, start in self.NARRATED)


def run_demo(*, duration: float = 60.0, with_register: bool = True) -> int:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        print("kotihub demo needs mosquitto: sudo apt-get install mosquitto (scripts/demo does it for you)")
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s  %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Narrated())
    try:
        return asyncio.run(_demo(duration, with_register))
    except KeyboardInterrupt:  # Ctrl-C while the daemon does not hold SIGINT (it otherwise stops the demo in order)
        print("\ndemo stopped; its temporary state is removed")
        return 130


@contextlib.contextmanager
def _local_register(root: Path, enabled: bool) -> Iterator[Any]:
    """The cloud register on 127.0.0.1 over TLS, in this process; a household with one member; yields the server
    (or None when the demo runs without it)."""
    if not enabled:
        yield None
        return
    from cloud_sync.register.server import BackgroundServer
    from cloud_sync.register.settings import Settings
    from kotihub_tools.broker import free_port

    port = free_port()
    alarm_demo = AlarmDemo()  # a simulated Twilio and the notification dispatcher
    alarm_demo.environment(f"https://127.0.0.1:{port}")
    # The app's passkeys need a host name (WebAuthn takes no IP address): the browser goes to localhost.
    app_url = f"https://localhost:{port}"
    server = BackgroundServer(Settings(state_dir=root / "register", public_url=app_url), port=port, graceful_s=3)
    server.start()
    alarm_demo.attach(server)
    server.alarm_demo = alarm_demo  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        alarm_demo.close()
        server.close()


async def _provision(server: Any, state: Path) -> str:
    """Enrolls the demo hub with the local register, as a technician would with ``kotihub provision``."""
    from cloud_sync.enroll import enroll
    from cloud_sync.register import memberlog
    from household import edit, keys

    reg = server.registry
    household = reg.create_household("Demo home", actor="demo")
    # What the first member's app does on their phone: make keys there and sign the household's first member list.
    aino = keys.generate()
    member = reg.add_member(household, "Aino", aino.recipient, actor="demo")
    memberlog.append(reg, household, edit.genesis(household, aino), actor="demo")
    server.alarm_demo.household(household, member.member_id, "Aino")
    from cloud_sync.register.webapp import links

    app = server.settings.public_url
    link = links.url(app, links.create(reg, member.member_id, actor="demo", now=time.time()))
    _say(f"the household's app: {app}/app/ (the register's own CA signed its certificate: the browser warns)")
    _say(f"Aino's one-time sign-in link (works once, for 15 min): {link}")
    token = reg.create_enroll_token(household, actor="demo")
    # The technician confirms the pairing code Aino's phone shows.
    result = await asyncio.to_thread(
        enroll,
        server.url,
        token,
        state,
        ca_file=server.settings.state_dir / "ca.crt",
        hub_name="demo",
        pairing_code=aino.pairing_code,
    )
    return str(result.hub_id)


async def _demo(duration: float, with_register: bool) -> int:
    from drivers.ble.driver import BleConfig, BleDriver
    from gateway.model import SmokeState
    from kotihub_tools.broker import start_mosquitto
    from kotihub_tools.simulators.ble_replay import RECORDINGS, RecordedCredentials, replay
    from kotihub_tools.simulators.miio import DEMO_SMOKE_SID, MiioSimulator, SimulatedGateway, demo_table
    from kotihub_tools.simulators.mqtt import run_simulator

    with tempfile.TemporaryDirectory(prefix="kotihub-demo-") as tmp:
        root = Path(tmp)
        token = os.urandom(16)
        credentials = root / "state" / "credentials"
        credentials.mkdir(parents=True, mode=0o700)
        token_file = credentials / "miio.token.127.0.0.1"
        token_file.write_text(token.hex())
        token_file.chmod(0o600)
        _say(
            "starting a private mosquitto (MQTT broker) on 127.0.0.1"
            + (", and a local register" if with_register else "")
        )
        with start_mosquitto(root / "mqtt") as broker, _local_register(root, with_register) as register:
            _say("starting a simulated Xiaomi gateway (miio over UDP on 127.0.0.1)")
            gateway = SimulatedGateway.demo(token)
            async with MiioSimulator(gateway, host="127.0.0.1", port=0) as miio:
                raw: dict[str, Any] = {
                    "hub": {"name": "demo", "state_dir": str(root / "state"), "runtime_dir": str(root / "run")},
                    "store": {"commit_interval": 0.5},
                    "drivers": {
                        "mqtt": {"host": broker.host, "port": broker.port, "sirens": [SIREN_RELAY]},
                        "miio": demo_table(miio.port, poll_interval=2.0),
                    },
                }
                if register is not None:
                    hub_id = await _provision(register, root / "state")
                    raw["uplink"] = {
                        "enabled": True,
                        "register_url": register.url,
                        "command_poll_wait": REGISTER_POLL_S,
                    }
                    _say(f"register on {register.url} (TLS); hub {hub_id} enrolled with a one-time token")
                cfg = configuration.parse(raw)
                _say(f"hub state in {root / 'state'} (encrypted); mosquitto on {broker.host}:{broker.port}")
                _say(
                    f"retention (destroying data after {cfg.retention.days} days) waits for a trusted clock: "
                    + ("the register confirms the time at the first sync" if register else "NTP or the register")
                )
                stop = asyncio.Event()
                daemon = Daemon(cfg, stop=stop)

                async def smoke_in_the_kitchen() -> None:
                    await asyncio.sleep(duration * 0.6)
                    _say("the Xiaomi smoke detector sees smoke ...")
                    gateway.smoke(DEMO_SMOKE_SID, SmokeState.SMOKE)
                    await asyncio.sleep(duration * 0.15)
                    gateway.smoke(DEMO_SMOKE_SID, SmokeState.CLEAR)

                async def timer() -> None:
                    await asyncio.sleep(duration)
                    stop.set()

                summary: dict[str, Any] = {}
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(daemon.run(), name="daemon")
                    await daemon.ready.wait()
                    _say("daemon ready; simulated devices start talking")
                    tg.create_task(_narrate(daemon, stop, summary, register), name="narrator")
                    if register is not None:
                        tg.create_task(register.alarm_demo.narrate(daemon, _say, stop), name="alarm-narrator")
                    tg.create_task(
                        run_simulator(broker.host, broker.port, stop=stop, interval=2.0, alarm_after=duration * 0.3),
                        name="mqtt-simulator",
                    )
                    tg.create_task(smoke_in_the_kitchen(), name="miio-scenario")
                    ble = BleDriver(
                        # The demo's recorded sensors are the household's; any other device would not be recorded.
                        BleConfig(availability_events=False, adopt=tuple(r.address for r in RECORDINGS)),
                        RecordedCredentials(),
                    )
                    assert daemon.hub is not None
                    daemon.hub.drivers["ble"] = ble
                    tg.create_task(replay(ble, daemon.hub, stop=stop, interval=1.0), name="ble-replay")
                    tg.create_task(timer(), name="timer")
                    await stop.wait()
                    _say(
                        "stopping: the hub flushes its store, then "
                        + ("the register and mosquitto stop" if register else "mosquitto stops")
                    )
                    for task in tg._tasks:  # the scenario tasks end with the demo
                        if task.get_name() in ("miio-scenario", "timer"):
                            task.cancel()
                # The uplink's HTTP calls run in worker threads that cancelling cannot stop; wait for them to end
                # and close their connections, or the register's shutdown waits on (and then cuts) them.
                await asyncio.get_running_loop().shutdown_default_executor()
    _print_summary(summary)
    return 0


def _register_alarms(register: Any, hub_id: str) -> set[tuple[str, float]]:
    """The smoke alarms the register holds for the hub, as (device, time)."""
    from cloud_sync.register import ingest

    return {
        (body["device_id"], body["ts"])
        for _, body in ingest.items(register.registry, hub_id, "alarm")
        if body["state"] == "smoke"
    }


def _register_counts(register: Any, hub_id: str) -> dict[str, int]:
    from cloud_sync.register import ingest

    return {lane: len(ingest.items(register.registry, hub_id, lane)) for lane in ("readings", "alarm", "events")}


async def _narrate(daemon: Daemon, stop: asyncio.Event, summary: dict[str, Any], register: Any) -> None:
    assert daemon.hub is not None and daemon.store is not None
    hub, store = daemon.hub, daemon.store
    feed = hub.subscribe()
    readings = 0
    last_report = time.monotonic()
    alarms: list[Event] = []  # smoke alarms not yet seen in the register
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            kind, payload = await asyncio.wait_for(feed.get(), timeout=0.5)
            if kind == "device" and isinstance(payload, DeviceInfo):
                label = " ".join(p for p in (payload.manufacturer, payload.model) if p) or payload.kind.value
                _say(f"new device  {payload.device_id}  ({payload.kind.value}: {label}, via {payload.driver})")
            elif kind == "readings":
                readings += len(payload)
            elif kind == "event" and isinstance(payload, Event):
                mark = "ALARM" if payload.kind is EventKind.SMOKE and payload.state == "smoke" else "event"
                what = f"{payload.kind.value} → {payload.state}"
                _say(f"{mark:5}       {payload.device_id}: {what} (stored, {payload.lane.value} lane)")
                if mark == "ALARM" and register is not None:
                    alarms.append(payload)
        if alarms and daemon.uplink is not None:
            held = await asyncio.to_thread(_register_alarms, register, daemon.uplink.hub_id)
            for alarm in [a for a in alarms if (a.device_id, a.ts) in held]:
                alarms.remove(alarm)
                _say(
                    f"REGISTER    the smoke alarm of {alarm.device_id} has reached the register "
                    f"({time.time() - alarm.ts:.1f} s after the detector raised it)"
                )
        if time.monotonic() - last_report > 5:
            depth = await store.depth()
            line = f"readings    {readings} received so far; {depth['readings']} stored waiting to sync"
            if register is not None and daemon.uplink is not None:
                counts = await asyncio.to_thread(_register_counts, register, daemon.uplink.hub_id)
                line += f"; the register holds {counts['readings']} readings, {counts['alarm']} alarm-lane events"
            _say(line)
            last_report = time.monotonic()
    status = msgspec.to_builtins(await daemon.control.status(Args()))
    summary.update(status)
    if register is not None and daemon.uplink is not None:
        summary["register"] = await asyncio.to_thread(_register_counts, register, daemon.uplink.hub_id)
    hub.unsubscribe(feed)


def _print_summary(s: dict[str, Any]) -> None:
    if not s:
        return
    c = s["counters"]
    print(
        f"\nsummary: {s['devices']['known']} devices, {c['readings_accepted']} readings stored encrypted, "
        f"{c['events_accepted']} events, {c['alarms']} smoke alarm(s); "
        f"outbox: {', '.join(f'{k} {v}' for k, v in s['store']['depth'].items())}",
        file=sys.stdout,
    )
    if "register" in s:
        r = s["register"]
        print(f"register: {r['readings']} readings, {r['alarm']} alarm-lane and {r['events']} other events synced")
