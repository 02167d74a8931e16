"""Daemon footprint benchmark (issue 3): memory, start-up time and CPU per reading of a real ``kotihub run``.

Prints, in one run, against a private mosquitto on 127.0.0.1 and a temporary state directory:

- resident memory of the idle daemon (MQTT driver enabled and connected, uplink off): ``VmRSS`` and ``VmHWM`` from
  ``/proc/PID/status``, a few seconds after READY (target < 60 MB);
- time from process start (just before ``exec``) to the ``READY=1`` datagram on a ``$NOTIFY_SOCKET`` unix datagram
  socket the benchmark owns, as systemd would see it (target < 1.5 s); the first start also creates the master key
  and the database, the later ones open them;
- CPU time (``utime + stime`` of every thread, from ``/proc/PID/stat``) per 1,000 readings ingested end to end:
  Zigbee2MQTT state messages ``{"temperature": .., "humidity": ..}`` (2 readings each, values changing so that
  dedupe drops nothing) published at a steady rate to mosquitto, decoded, passed through the hub and accepted
  (group-committed, encrypted) by the store; checked with ``kotihub status --json``. In the same run and on the
  same messages: a bare aiomqtt subscriber process (same topic filters, same QoS; receives and discards: the floor)
  and ``mosquitto_sub`` (C, for information). Target: daemon CPU <= 2x the bare subscriber.
- sustained QoS 1 throughput with mosquitto's default in-flight window (``max_inflight_messages`` 20): the daemon
  acknowledges a message only once what it produced is committed, so its rate is bounded by commits, not by the
  network. A backlog of ``--qos1-messages`` is queued at the broker while the daemon is stopped (SIGSTOP), then
  the time from SIGCONT to the last reading accepted gives messages/s (target >= 1,000/s). The baseline, in the same
  run and on the same backlog: the bare aiomqtt subscriber (paho's automatic PUBACK on receipt, nothing stored).

All three receive the same stream at the same time. CPU time, unlike wall time, barely depends on the other
processes sharing the 2 cores, but a process that falls behind reads more messages per wake-up and so pays less per
message: the rate is kept moderate (``--rate``) so that none of them does.

Run: ``.venv/bin/python bench/daemon_footprint.py [--messages N] [--rate MSG_PER_S] [--devices D] [--qos 0|1]``.
Not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.mqtt.config import MqttConfig
from drivers.mqtt.decoders import MqttDecoder
from gateway.control import call
from kotihub_tools.broker import MosquittoBroker, start_mosquitto

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")

TARGET_RSS_MB = 60.0
TARGET_READY_S = 1.5
TARGET_CPU_RATIO = 2.0

# The floor: receive every message the daemon's filters match, and discard it. Prints "subscribed" once it is,
# and "done <n>" once it has received the expected count; then waits for stdin to close.
BARE_SUBSCRIBER = r"""
import asyncio, sys
import aiomqtt

async def main(host, port, qos, expect, topics):
    n = 0
    async with aiomqtt.Client(host, port, identifier="bench-bare") as client:
        for t in topics:
            await client.subscribe(t, qos=qos)
        print("subscribed", flush=True)
        async for message in client.messages:
            n += 1
            if n == expect:
                print(f"done {n}", flush=True)
                break
    await asyncio.to_thread(sys.stdin.read)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]))
"""


# The baseline for the QoS 1 drain: a persistent session (so the broker queues while it is stopped), automatic
# PUBACK on receipt. Prints "subscribed", then "done <monotonic time>" after `expect` messages.
BARE_DRAIN = r"""
import asyncio, sys, time
import aiomqtt

async def main(host, port, expect, topics):
    n = 0
    async with aiomqtt.Client(host, port, identifier="bench-drain", clean_session=False) as client:
        for t in topics:
            await client.subscribe(t, qos=1)
        print("subscribed", flush=True)
        async for message in client.messages:
            n += 1
            if n == expect:
                print(f"done {time.monotonic()}", flush=True)
                break
    await asyncio.to_thread(sys.stdin.read)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
"""
# mosquitto's defaults except the queue: a stopped client's backlog must stay queued (scripts/install does the same).
BROKER_CONFIG = "allow_anonymous true\nmax_queued_messages 1000000\n"
TARGET_QOS1_RATE = 1000.0


def cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5), counted from 1


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon (heap, stacks), RssFile (mapped code: the interpreter and extension modules) in MB
    (10^6 bytes)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB (10^6 bytes)."""
    values = memory(pid)
    return values["VmRSS"], values["VmHWM"]


class Daemon:
    """``kotihub run`` as systemd would run it (``Type=notify``), with a private notify socket."""

    def __init__(self, root: Path, broker: MosquittoBroker) -> None:
        self.root = root
        self.config = root / "kotihub.toml"
        self.config.write_text(
            f'[hub]\nstate_dir = "{root / "state"}"\nruntime_dir = "{root / "run"}"\nlog_level = "info"\n'
            f'[drivers.mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        )
        self.notify_path = root / "notify.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.stderr = root / "daemon.log"

    def start(self, timeout: float = 30.0) -> float:
        """Starts the daemon; returns seconds from just before exec to the READY=1 datagram. The notify socket stays
        open while the daemon runs (as systemd's does): it also sends WATCHDOG=1 and STOPPING=1 there."""
        self.notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(timeout)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        kotihub = shutil.which("kotihub", path=str(VENV_BIN)) or "kotihub"
        with self.stderr.open("ab") as err:
            started = time.monotonic()
            self.proc = subprocess.Popen([kotihub, "run", "--config", str(self.config)], env=env, stderr=err, cwd=ROOT)
        try:
            while True:
                data = self.notify.recv(4096)
                if b"READY=1" in data.split(b"\n"):
                    return time.monotonic() - started
        except TimeoutError:
            raise RuntimeError(f"no READY=1 within {timeout} s:\n{self.stderr.read_text()[-3000:]}") from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def quick_status(self) -> dict[str, Any]:
        """The status over the control socket from this process: no CLI start-up cost in the daemon's way."""
        result: dict[str, Any] = call(self.root / "run" / "control.sock", "status", timeout=60)
        return result

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [str(VENV_BIN / "kotihub"), "status", "--json", "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        status: dict[str, Any] = json.loads(out.stdout)
        return status

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        self.notify.close()
        return code


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def z2m_messages(devices: int, count: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """``count`` state messages round-robin over ``devices`` Aqara-like sensors named by IEEE address (Z2M's
    default friendly name). Each device's values change on every message, so the decoder's dedupe passes all."""
    out = []
    for i in range(offset, offset + count):
        dev, k = i % devices, i // devices
        temperature = round(18.0 + (k % 700) * 0.01 + dev * 0.001, 3)
        humidity = round(40.0 + (k % 900) * 0.02, 2)
        payload = json.dumps({"temperature": temperature, "humidity": humidity}, separators=(",", ":"))
        out.append((f"zigbee2mqtt/0x00158d00{dev:08x}", payload.encode()))
    return out


async def publish(host: str, port: int, messages: list[tuple[str, bytes]], rate: float, qos: int) -> float:
    """Publishes at ``rate`` messages/s in 10 ms slices; returns the achieved rate."""
    async with aiomqtt.Client(host, port, identifier="bench-publisher") as client:
        start = time.monotonic()
        for i, (topic, payload) in enumerate(messages):
            await client.publish(topic, payload, qos=qos)
            ahead = start + (i + 1) / rate - time.monotonic()
            if ahead > 0.01:
                await asyncio.sleep(ahead)
        elapsed = time.monotonic() - start
    return len(messages) / elapsed


def qos1_drain(daemon: Daemon, broker: MosquittoBroker, topics: list[str], count: int, devices: int) -> dict[str, Any]:
    """Messages/s of the daemon and of the bare subscriber draining the same QoS 1 backlog, one after the other."""
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_DRAIN, broker.host, str(broker.port), str(count), *topics],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bare.stdout is not None and bare.stdin is not None
        if bare.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the draining subscriber did not subscribe")
        base = daemon.quick_status()["counters"]["readings_accepted"]
        os.kill(daemon.pid, signal.SIGSTOP)
        os.kill(bare.pid, signal.SIGSTOP)
        try:
            messages = z2m_messages(devices, count, offset=10_000_000)  # values unseen so far: no dedupe
            asyncio.run(publish(broker.host, broker.port, messages, 1e9, 1))
        finally:
            c0 = cpu_s(daemon.pid)
            t0 = time.monotonic()
            os.kill(daemon.pid, signal.SIGCONT)
        expected = base + 2 * count
        while (status := daemon.quick_status())["counters"]["readings_accepted"] < expected:
            if time.monotonic() - t0 > 600:
                raise RuntimeError("the daemon did not drain the backlog within 600 s")
            time.sleep(0.05)
        daemon_s = time.monotonic() - t0
        daemon_cpu = cpu_s(daemon.pid) - c0
        mqtt = status["drivers"]["mqtt"]
        b0 = cpu_s(bare.pid)
        t1 = time.monotonic()
        os.kill(bare.pid, signal.SIGCONT)
        line = bare.stdout.readline().split()
        if not line or line[0] != "done":
            raise RuntimeError(f"the draining subscriber said {line!r}")
        bare_s = float(line[1]) - t1
        bare_cpu = cpu_s(bare.pid) - b0
        bare.stdin.close()
        bare.wait(10)
    finally:
        if bare.poll() is None:
            os.kill(bare.pid, signal.SIGCONT)
            bare.terminate()
            bare.wait(10)
    return {
        "daemon_rate": count / daemon_s,
        "bare_rate": count / bare_s,
        "daemon_cpu_ms_per_k": daemon_cpu / count * 1e6,
        "bare_cpu_ms_per_k": bare_cpu / count * 1e6,
        "early_commits": mqtt.get("early_commits", 0),
        "redeliveries": mqtt.get("redeliveries", 0),
        "unacked": mqtt.get("unacked", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="measured messages (2 readings each)")
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0, help="publish QoS (Zigbee2MQTT's default: 0)")
    parser.add_argument("--starts", type=int, default=3, help="daemon starts timed (the last one stays up)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before memory is read")
    parser.add_argument("--qos1-messages", type=int, default=20_000, help="QoS 1 backlog drained (0: skip)")
    args = parser.parse_args()
    topics = MqttDecoder(MqttConfig().families()).subscriptions()
    warm = args.devices
    expect_total = warm + args.messages

    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="bench-footprint-") as tmp:
        root = Path(tmp)
        procs: list[subprocess.Popen[Any]] = []
        with start_mosquitto(root / "mosquitto", extra_config=BROKER_CONFIG) as broker:
            daemon = Daemon(root, broker)
            try:
                # ---- start-up time ------------------------------------------------------------------------------
                ready: list[float] = []
                for i in range(args.starts):
                    ready.append(daemon.start())
                    if i < args.starts - 1:
                        code = daemon.stop()
                        if code != 0:
                            raise RuntimeError(f"daemon exited with {code}:\n{daemon.stderr.read_text()[-3000:]}")
                pid = daemon.pid
                wait_for(lambda: daemon.status()["drivers"].get("mqtt", {}).get("connected"), 30, "the MQTT connection")

                # ---- the floor and the reference subscribers ------------------------------------------------
                bare = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        BARE_SUBSCRIBER,
                        broker.host,
                        str(broker.port),
                        "1",
                        str(expect_total),
                        *topics,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                procs.append(bare)
                assert bare.stdout is not None
                if bare.stdout.readline().strip() != "subscribed":
                    raise RuntimeError("the bare subscriber did not subscribe")
                sub_out = root / "mosquitto_sub.out"
                with sub_out.open("wb") as out:
                    msub = subprocess.Popen(
                        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-C",
                         str(expect_total), "-i", "bench-mosquitto-sub", *(a for t in topics for a in ("-t", t))],
                        stdout=out,
                    )  # fmt: skip
                procs.append(msub)

                # ---- idle --------------------------------------------------------------------------------------
                cpu_idle0 = cpu_s(pid)
                time.sleep(args.idle)
                idle_cpu_rate = (cpu_s(pid) - cpu_idle0) / args.idle
                rss_idle, hwm_idle = memory_mb(pid)
                mem_idle, mem_bare = memory(pid), memory(bare.pid)
                # Cost of one `kotihub status` call as seen by the daemon (subtracted for the polls below).
                polls = 5
                c0 = cpu_s(pid)
                t0 = time.monotonic()
                for _ in range(polls):
                    daemon.status()
                status_cost = max(0.0, (cpu_s(pid) - c0 - idle_cpu_rate * (time.monotonic() - t0)) / polls)

                # ---- warm-up: one message per device (device registration is a one-time cost) -------------------
                t_warm = time.monotonic()
                asyncio.run(publish(broker.host, broker.port, z2m_messages(args.devices, warm), args.rate, args.qos))
                base = wait_for(
                    lambda: (s := daemon.status())["counters"]["readings_accepted"] >= 2 * warm and s,
                    30 + 3 * warm,
                    "the warm-up readings",
                )["counters"]["readings_accepted"]
                warm_s = time.monotonic() - t_warm
                wait_for(lambda: sub_out.read_bytes().count(b"\n") >= warm, 30, "mosquitto_sub's warm-up")

                # ---- measured ingest ---------------------------------------------------------------------------
                messages = z2m_messages(args.devices, args.messages, offset=warm)
                time.sleep(0.5)
                cpu0 = {"daemon": cpu_s(pid), "bare": cpu_s(bare.pid), "msub": cpu_s(msub.pid)}
                broker_pid = broker._proc.pid if broker._proc is not None else None
                broker0 = cpu_s(broker_pid) if broker_pid else 0.0
                t0 = time.monotonic()
                achieved = asyncio.run(publish(broker.host, broker.port, messages, args.rate, args.qos))
                line = bare.stdout.readline().strip()
                cpu_bare = cpu_s(bare.pid) - cpu0["bare"]
                if line != f"done {expect_total}":
                    raise RuntimeError(f"bare subscriber: {line!r}")
                _, wstatus, rusage = os.wait4(msub.pid, 0)
                msub.returncode = os.waitstatus_to_exitcode(wstatus)
                cpu_msub = rusage.ru_utime + rusage.ru_stime - cpu0["msub"]
                expected = base + 2 * args.messages
                calls = 0
                while True:
                    time.sleep(0.5)
                    cpu_daemon = cpu_s(pid) - cpu0["daemon"]
                    status = daemon.status()
                    calls += 1
                    if status["counters"]["readings_accepted"] >= expected or time.monotonic() - t0 > 600:
                        break
                wall = time.monotonic() - t0
                cpu_daemon -= (calls - 1) * status_cost
                broker_cpu = cpu_s(broker_pid) - broker0 if broker_pid else 0.0
                accepted = status["counters"]["readings_accepted"] - base
                duplicates = status["drivers"]["mqtt"].get("counters", {}).get("duplicates", 0)
                rss_after, hwm_after = memory_mb(pid)
                received_msub = sub_out.read_bytes().count(b"\n") - warm
                drain = (
                    qos1_drain(daemon, broker, topics, args.qos1_messages, args.devices) if args.qos1_messages else {}
                )
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        if proc.stdin is not None:
                            proc.stdin.close()
                        proc.terminate()
                        proc.wait(10)
                code = daemon.stop() if daemon.proc is not None else 0
        if code != 0:
            print(f"warning: the daemon exited with {code}; see its log", file=sys.stderr)

    readings = 2 * args.messages
    per_k = 1000 / readings
    ratio = cpu_daemon / cpu_bare if cpu_bare > 0 else float("inf")
    print(
        f"messages: {args.messages} Zigbee2MQTT state messages ({readings} readings) from {args.devices} devices, "
        f"QoS {args.qos}, {achieved:,.0f} msg/s achieved (asked {args.rate:,.0f}), {wall:.1f} s to the last commit"
    )
    print(f"warm-up: {warm} new devices, one message each, accepted after {warm_s:.1f} s")
    print(f"readings accepted by the daemon: {accepted} of {readings} (dedupe dropped {duplicates})")
    print(f"mosquitto_sub received {received_msub} of {args.messages} (QoS 1 subscriptions everywhere)")
    print()
    print(f"{'figure':<42}{'measured':>12}{'target':>12}{'ratio':>9}")
    first, rest = ready[0], ready[1:]
    print(f"{'READY=1 after start, first (creates state)':<42}{first:>10.2f} s{'< 1.5 s':>12}"
          f"{first / TARGET_READY_S:>9.2f}")  # fmt: skip
    if rest:
        med = statistics.median(rest)
        print(f"{'READY=1 after start, restart (median)':<42}{med:>10.2f} s{'< 1.5 s':>12}{med / TARGET_READY_S:>9.2f}")
    print(f"{'VmRSS idle':<42}{rss_idle:>9.1f} MB{'< 60 MB':>12}{rss_idle / TARGET_RSS_MB:>9.2f}")
    print(f"{'VmHWM idle (peak so far)':<42}{hwm_idle:>9.1f} MB{'< 60 MB':>12}{hwm_idle / TARGET_RSS_MB:>9.2f}")
    print(f"{'  of which RssAnon / RssFile':<42}{mem_idle['RssAnon']:>6.1f}/{mem_idle['RssFile']:.1f}{'(info)':>12}")
    print(f"{'bare aiomqtt subscriber VmRSS (anon/file)':<42}{mem_bare['VmRSS']:>9.1f} MB{'(info)':>12}"
          f"   {mem_bare['RssAnon']:.1f}/{mem_bare['RssFile']:.1f}")  # fmt: skip
    print(f"{'VmRSS / VmHWM after the ingest':<42}{rss_after:>6.1f}/{hwm_after:.1f}{'(info)':>12}")
    print(f"{'daemon idle CPU':<42}{idle_cpu_rate * 1000:>7.1f} ms/s{'(info)':>12}")
    print()
    print(f"{'CPU per 1,000 readings, end to end':<42}{'ms':>12}{'x bare':>12}")
    print(f"{'  kotihub daemon (MQTT -> store commit)':<42}{cpu_daemon * per_k * 1000:>12.1f}{ratio:>12.2f}"
          f"   target <= {TARGET_CPU_RATIO:.1f}")  # fmt: skip
    print(f"{'  bare aiomqtt subscriber (floor)':<42}{cpu_bare * per_k * 1000:>12.1f}{1.0:>12.2f}")
    print(f"{'  mosquitto_sub (C, info)':<42}{cpu_msub * per_k * 1000:>12.1f}{cpu_msub / cpu_bare:>12.2f}")
    print(f"{'  mosquitto broker (info, fans out to 3)':<42}{broker_cpu * per_k * 1000:>12.1f}")
    print(f"(daemon CPU excludes {calls - 1} status poll(s) at ~{status_cost * 1000:.0f} ms each; "
          f"CPU from /proc/PID/stat at {TICK} Hz)")  # fmt: skip
    if drain:
        print()
        print(f"QoS 1 backlog of {args.qos1_messages} messages drained after SIGCONT, mosquitto's default window (20)")
        print(f"{'':<42}{'msg/s':>12}{'x bare':>12}{'CPU ms/1k msg':>15}")
        rate, bare_rate = drain["daemon_rate"], drain["bare_rate"]
        print(f"{'  kotihub daemon (PUBACK after commit)':<42}{rate:>12,.0f}{rate / bare_rate:>12.2f}"
              f"{drain['daemon_cpu_ms_per_k']:>15.1f}   target >= {TARGET_QOS1_RATE:,.0f}/s "
              f"(ratio to target {rate / TARGET_QOS1_RATE:.2f})")  # fmt: skip
        print(f"{'  bare aiomqtt subscriber (ack on receipt)':<42}{bare_rate:>12,.0f}{1.0:>12.2f}"
              f"{drain['bare_cpu_ms_per_k']:>15.1f}")  # fmt: skip
        print(
            f"(early commits when the window filled: {drain['early_commits']}; unacked at the end: {drain['unacked']})"
        )


if __name__ == "__main__":
    main()
