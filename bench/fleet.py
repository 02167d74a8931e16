"""A fleet against one register on PostgreSQL (issue 17, item 8): sustained ingest, alarm p99 under that load, the
catch-up rate of one hub, register CPU per 100,000 readings, the share of raw binary COPY speed measured in the same
run, and an extrapolation to 50,000 and 500,000 homes.

What runs:

* a private PostgreSQL 15 cluster (tests/support/postgres.py) and ``kotihub-register serve --db … --workers 2
  --alarm-port …`` as its own process tree (production defaults, migrations included; ``--workers``,
  ``--alarm-port`` and ``--no-alarm-listener`` change that; the register's CPU is summed over the tree); the alarms
  go to the alarm URL the register announces (``Kotihub-Alarm-Url``), as a hub sends them;
* ``--hubs`` (default 2,000) hubs enrolled through the register's own enrollment (a CSR per hub, a certificate signed
  by the register's CA), each a real mTLS client (aiohttp) holding the connections a real hub holds
  (docs/register.md, "What a hub holds"): one for the alarm lane, one for the bulk lanes, one for the command
  long-poll; spread over ``--sources`` loopback addresses as homes behind their own NATs are;
* two load processes holding the bulk connections (and long-polls) of half the hubs each. Every hub sends its
  readings at a home's rate: ``--sensors`` (60) sensors every ``--period`` (30 s), sent as the hub's store commits
  them (once a second). Process B also plays a region coming back from an outage: ``--catchup-hubs`` hubs each drain
  a backlog of ``--backlog`` readings in batches as the uplink sends them: 5,000 (``batch_items``) at first, doubling
  to ``--batch-max`` (``batch_items_max``, 20,000) while acks come within the uplink's growth bound (a quarter of
  ``read_timeout``)
  (cloud_sync/uplink/batchsize.py; each page read while the one before is on the wire, as the uplink's drain reads
  it), one batch in flight per hub. The catch-up acks' times are printed against that bound: a real hub would have
  grown its batches only if they were within it;
* a third load process holding every hub's alarm connection, and nothing else: it sends smoke alarms from random
  hubs at Poisson times (``--alarm-rate`` per second), each on its own without waiting for the one before, and times
  each from just before its request is written to its acknowledgement (after commit). Its own event loop has
  nothing else to do, so the time measured is the register's (and the network's); how late each alarm left
  against its schedule is printed too, as the check that this process is not the wall. Each hub pings its alarm
  connection every ``--alarm-keepalive`` seconds (120, the hub's default; 0: no pings, and every alarm on a new
  connection, as a real hub's alarms, minutes to months apart, met it); ``--compare-keepalive`` makes half the hubs
  sending to the listener not ping, the baseline in the same run;
* the steady fleet alone for ``--steady-window`` seconds (20) before the catch-up and the alarms begin: what homes
  cost the register and PostgreSQL at their own rate (sends, long-polls, pings), the base of the extrapolation to
  50,000 and 500,000 homes; a catch-up reading's cost is the measured window's CPU less the steady fleet's share;
* before the fleet: one hub's steady sends alone, one after another (the register's CPU per request, without the
  fleet's connections and queues), its catch-up alone (the rate of one hub) and the alarm latency with the register
  idle;
  after it: raw binary COPY of the same narrow rows into an unindexed table, one connection, on the same machine.

Run: ``.venv/bin/python bench/fleet.py [--hubs 2000] [--duration 30]``. Not a test: it prints figures. The machine's
other load is not controlled: read the figures with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402
import psycopg  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from register_proc import TICK, RegisterProcess, cpu_s, free_port  # noqa: E402

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.uplink.alarmroute import check_alarm_url  # noqa: E402
from cloud_sync.uplink.batchsize import GROW_WITHIN, BatchSize  # noqa: E402
from gateway.config import UplinkSection  # noqa: E402
from tests.support.postgres import PostgresCluster, start_cluster  # noqa: E402

BATCH = UplinkSection().batch_items  # 5,000
GROW_S = GROW_WITHIN * UplinkSection().read_timeout  # how soon an ack lets the uplink's next batch double
TARGET_RATE = 300_000
TARGET_SHARE = 0.30
TARGET_ALARM_P99_MS = 100.0
TARGET_ONE_HUB = 50_000
T0 = 1.76e9


@dataclass(frozen=True)
class Hub:
    hub_id: str
    cert: str
    key: str
    source: str


# ------------------------------------------------------------------------------------------------------ set-up


def enroll_hubs(state: Path, db_url: str, n: int, hub_dir: Path, sources: int) -> list[Hub]:
    """``n`` households with one hub each, enrolled by the register's own code (what ``POST /v1/enroll`` runs) so the
    bench is not held up by the enrollment rate limits; each hub's key and certificate are written for its TLS."""
    from cloud_sync.register.registry import Registry
    from cloud_sync.register.settings import Settings

    reg = Registry(Settings(state_dir=state, db_url=db_url))
    hubs = []
    try:
        for i in range(n):
            household = reg.create_household(f"bench {i}", actor="bench")
            token = reg.create_enroll_token(household, actor="bench")
            key = ec.generate_private_key(ec.SECP256R1())
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kotihub")]))
                .sign(key, hashes.SHA256())
            )
            resp = reg.enroll(
                p.EnrollRequest(token=token, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode())
            )
            cert, keyf = hub_dir / f"{i}.crt", hub_dir / f"{i}.key"
            cert.write_text(resp.cert_pem)
            keyf.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            source = f"127.1.{(i % sources) // 250}.{(i % sources) % 250 + 1}"
            hubs.append(Hub(resp.hub_id, str(cert), str(keyf), source))
    finally:
        reg.close()
    return hubs


def postgres_cpu_s(cluster: PostgresCluster) -> float:
    """CPU seconds of the cluster's postmaster and every process it started (backends, WAL writer, checkpointer)."""
    return tree_cpu_s(int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0]))


def children(pid: int) -> list[int]:
    try:
        return [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    except OSError:  # exited meanwhile
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants (the register's supervisor and its workers), with the
    children it has reaped (a worker restarted during the run)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
    return own + sum(tree_cpu_s(k) for k in children(pid))


def listener_pid(supervisor: int, port: int) -> int | None:
    """The register's child holding the listening socket of ``port`` (the alarm listener)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(f":{port:04X}") and f[3] == "0A":
            inodes.add(f"socket:[{f[9]}]")
    for kid in children(supervisor):
        try:
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{kid}/fd").iterdir()):
                return kid
        except OSError:
            continue
    return None


def announced_alarm_url(url: str, ca: str) -> str | None:
    """The alarm URL the register announces on its main port's replies, checked as a hub checks it."""
    import requests

    resp = requests.get(f"{url}/v1/health", verify=ca, timeout=30)
    resp.raise_for_status()
    value = resp.headers.get(p.ALARM_URL_HEADER)
    return check_alarm_url(value, url) if value is not None else None


# ------------------------------------------------------------------------------------------------------ the hubs


COLUMNS = True
"""Readings go as columns (``protocol.ReadingColumns``), as a hub sends them to a register that takes them; False
(``--wire items``): as items, the baseline. Set in each process from the arguments."""
COLUMNS_HEADERS = {**p.INGEST_HEADERS, "Content-Type": p.READING_COLUMNS_CONTENT_TYPE}


class ColumnsBody(bytes):
    """A readings body sent as columns (its ``Content-Type`` differs)."""


def readings_encoded(hub_id: str, items: list[p.Item]) -> bytes:
    """The body as the hub's client makes it: columns where they pay (``protocol.columns_pay``), else items."""
    columns = p.reading_columns(hub_id, items)
    if COLUMNS and p.columns_pay(columns):
        return ColumnsBody(p.encode_batch(columns))
    return p.encode_batch(p.IngestBatch(hub_id=hub_id, lane="readings", items=items))


def readings_body(hub_id: str, first: int, n: int, t: float) -> bytes:
    items = [
        p.Item(
            seq=first + i,
            ts=t,
            body={"device_id": f"zigbee:{(first + i) % 60:02d}", "quantity": "temperature", "value": 21.5, "ts": t},
        )
        for i in range(n)
    ]
    return readings_encoded(hub_id, items)


def backlog_items(first: int, n: int, start: float) -> list[p.Item]:
    """Items ``first`` to ``first + n`` of a backlog: 60 sensors in turn, a reading every 0.5 s from ``start``."""
    return [
        p.Item(
            seq=seq,
            ts=start + seq * 0.5,
            body={
                "device_id": f"zigbee:{seq % 60:02d}",
                "quantity": "temperature",
                "value": 20 + (seq % 50) / 10,
                "ts": start + seq * 0.5,
            },
        )
        for seq in range(first, first + n)
    ]


def page_sizes(backlog: int, most: int) -> list[int]:
    """The batches the uplink's drain sends for ``backlog`` readings when every full batch is acknowledged within
    its growth bound: its own :class:`BatchSize`, each page asked at the size from before the ack of the one on the
    wire (cloud_sync.uplink.lanes._drain)."""
    size = BatchSize(BATCH, most, UplinkSection().batch_bytes, grow_within_s=GROW_S)
    sizes: list[int] = []
    asked = size.items
    while sum(sizes) < backlog:
        sizes.append(min(asked, backlog - sum(sizes)))
        nxt = size.items  # the next page is read now, while this one is on the wire
        size.sent(full=sizes[-1] >= asked, took_s=0.0)
        asked = nxt
    return sizes


def catchup_bodies(hub_id: str, backlog: int, start: float, most: int) -> list[tuple[int, bytes]]:
    """A backlog as the hub's outbox holds it (a reading of each sensor every period, oldest first), in the batches
    its uplink sends (:func:`page_sizes`)."""
    out = []
    first = 0
    for n in page_sizes(backlog, most):
        out.append((n, readings_encoded(hub_id, backlog_items(first, n, start))))
        first += n
    return out


def alarm_body(hub_id: str, seq: int) -> bytes:
    t = time.time()
    item = p.Item(seq=seq, ts=t, body={"device_id": "zigbee:smoke", "kind": "smoke", "state": "smoke", "ts": t})
    return p.encode_batch(p.IngestBatch(hub_id=hub_id, lane="alarm", items=[item]))


class SimHub:
    """One hub's connections (those of ``conns`` this load process holds): alarm lane, bulk lanes, command long-poll —
    one aiohttp connector (one TLS connection) each."""

    def __init__(
        self,
        hub: Hub,
        url: str,
        ca: str,
        conns: tuple[str, ...] = ("alarm", "bulk", "poll"),
        alarm_url: str | None = None,
        ping_every: float = 0.0,
    ) -> None:
        self.hub, self.url = hub, url
        self.ping_every = ping_every
        """Seconds between pings of the alarm connection (``GET /v1/alarm/ping``), as a hub's alarm lane sends while
        idle (``uplink.alarm_keepalive_s``); 0: none, and each alarm on a new connection, as a real hub's were."""
        self.urls = {"alarm": alarm_url or url}
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(hub.cert, hub.key)
        # Whether an alarm opened a connection (TCP and a TLS handshake: the register closed the idle one) or reused
        # one, so the alarm figures can be split by it.
        self.alarm_connected = False
        opened = aiohttp.TraceConfig()

        async def connected(*_: Any) -> None:
            self.alarm_connected = True

        opened.on_connection_create_end.append(connected)

        def connector(lane: str) -> aiohttp.TCPConnector:
            if lane == "alarm" and ping_every == 0:
                # A hub that does not ping meets every alarm (minutes to months apart) with its connection long
                # closed by the register: each alarm a new connection.
                return aiohttp.TCPConnector(limit=1, ssl=ctx, local_addr=(hub.source, 0), force_close=True)
            # aiohttp's own idle close must not come before the register's, or pings could not keep it.
            keep = max(60.0, 2 * ping_every) if lane == "alarm" else 60.0
            return aiohttp.TCPConnector(limit=1, ssl=ctx, local_addr=(hub.source, 0), keepalive_timeout=keep)

        self.sessions = {
            lane: aiohttp.ClientSession(
                connector=connector(lane),
                timeout=aiohttp.ClientTimeout(total=120),
                trace_configs=[opened] if lane == "alarm" else None,
            )
            for lane in conns
        }
        self.alarm_busy = False
        self.seq = 1_000_000_000  # steady readings, above any catch-up backlog
        self.alarm_seq = 0

    async def post(self, conn: str, lane: str, body: bytes) -> dict[str, Any]:
        for attempt in range(3):
            try:
                async with self.sessions[conn].post(
                    f"{self.urls.get(conn, self.url)}/v1/ingest/{lane}",
                    data=body,
                    headers=COLUMNS_HEADERS if isinstance(body, ColumnsBody) else p.INGEST_HEADERS,
                ) as resp:
                    data = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{lane}: {resp.status} {data[:200]!r}")
                    return dict(msgspec.json.decode(data))
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # The register closed a connection idle past its keep-alive (35 s) as we reused it: resend (ingest
                # is idempotent), as the hub does; the time it costs stays in the measured latency.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def steady(self, per_s: float, every: float, stop: asyncio.Event, counts: dict[str, int]) -> None:
        """A reading per sensor per period, sent every ``every`` seconds (1 s: as the hub's store commits them). The
        first send comes within one period, so a hub in its rhythm keeps its connection (the register closes one
        idle for 35 s) as a real hub sending every 30 s does."""
        owed = random.random() * per_s * every
        # On a fixed schedule: sleeping a period after each ack would stretch the gap past the keep-alive whenever
        # the register is slow, and the bench would measure reconnects of its own making.
        due = time.monotonic() + random.random() * every
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += every
            owed += per_s * every
            n = int(owed)
            if not n:
                continue
            owed -= n
            ack = await self.post("bulk", "readings", readings_body(self.hub.hub_id, self.seq, n, time.time()))
            self.seq += n
            counts["steady"] += ack["stored"]
            counts["requests"] += 1

    async def keep_warm(self, stop: asyncio.Event) -> None:
        """Pings the alarm connection every ``ping_every`` seconds (first at a random point of the period), unless
        an alarm is on it."""
        await asyncio.sleep(random.random() * self.ping_every)
        while not stop.is_set():
            if not self.alarm_busy:
                async with self.sessions["alarm"].get(f"{self.urls['alarm']}{p.ALARM_PING_PATH}") as resp:
                    await resp.read()
                    if resp.status != 204:
                        raise RuntimeError(f"alarm ping: {resp.status}")
            await asyncio.sleep(self.ping_every)

    async def poll(self, stop: asyncio.Event) -> None:
        # The hub's default wait, which the register takes (it says so in each answer). The first is shorter, by a
        # random part of it: a fleet's hubs are not in step (they started at different times), so the long-polls
        # come due spread out, hubs/wait a second, and not all at once as when every hub starts with the bench.
        wait = random.uniform(0, p.MAX_COMMAND_WAIT_S)
        while not stop.is_set():
            async with self.sessions["poll"].get(f"{self.url}/v1/commands", params={"wait": f"{wait:g}"}) as resp:
                await resp.read()
            wait = p.MAX_COMMAND_WAIT_S

    async def alarm(self) -> float:
        self.alarm_seq += 1
        body = alarm_body(self.hub.hub_id, self.alarm_seq)
        self.alarm_busy = True
        self.alarm_connected = False
        try:
            start = time.perf_counter()
            ack = await self.post("alarm", "alarm", body)
            took = time.perf_counter() - start
        finally:
            self.alarm_busy = False
        if ack["stored"] != 1:
            raise RuntimeError(f"alarm not stored: {ack}")
        return took

    async def close(self) -> None:
        for s in self.sessions.values():
            await s.close()


async def drain(
    sim: SimHub,
    bodies: list[tuple[int, bytes]],
    stop: asyncio.Event,
    counts: dict[str, int],
    acks: list[tuple[int, float]],
) -> None:
    for n, body in bodies:
        if stop.is_set():
            return
        start = time.monotonic()
        ack = await sim.post("bulk", "readings", body)
        acks.append((n, time.monotonic() - start))
        counts["catchup"] += ack["stored"]
        counts["requests"] += 1


async def _load(role: str, hubs: list[Hub], url: str, ca: str, args: dict[str, Any], pipe: Connection) -> None:
    """``role`` "A" or "B": the bulk connections (and long-polls) of ``hubs``, B with the catch-up; "alarms": their
    alarm connections and the smoke alarms."""
    rng = random.Random(f"fleet-{role}")
    random.seed(f"fleet-{role}-jitter")
    alarms = role == "alarms"
    conns = ("alarm",) if alarms else ("bulk", "poll") if args["commands"] else ("bulk",)

    # With --compare-main, every other hub sends its alarms to the main port: the baseline, under the same load.
    # With --compare-keepalive, every other hub sending to the listener pings its alarm connection and the others
    # do not: the baseline of the kept connection, under the same load.
    def pings(i: int) -> float:
        return 0.0 if args["compare_keepalive"] and (i // 2) % 2 else args["alarm_keepalive"]

    sims = [
        SimHub(h, url, ca, conns, None if args["compare_main"] and i % 2 else args["alarm_url"], pings(i))
        for i, h in enumerate(hubs)
    ]
    counts = {"steady": 0, "catchup": 0, "requests": 0}
    stop = asyncio.Event()
    bodies: dict[int, list[tuple[int, bytes]]] = {}
    if role == "B":
        for i in range(args["catchup_hubs"]):
            bodies[i] = catchup_bodies(hubs[i].hub_id, args["backlog"], T0 - 30 * 86_400, args["batch_max"])
    # Connect every hub: one reading on the bulk connection, or one empty alarm batch on the alarm connection.
    sem = asyncio.Semaphore(200)

    async def connect(sim: SimHub) -> None:
        async with sem:
            if alarms:
                await sim.post("alarm", "alarm", p.encode_batch(p.IngestBatch(sim.hub.hub_id, "alarm", [])))
            else:
                await sim.post("bulk", "readings", readings_body(sim.hub.hub_id, sim.seq, 1, time.time()))
                sim.seq += 1

    await asyncio.gather(*(connect(s) for s in sims))
    tasks: list[asyncio.Task[Any]] = []
    if not alarms:
        tasks += [asyncio.create_task(s.steady(args["per_s"], args["every"], stop, counts)) for s in sims]
    if args["commands"] and not alarms:
        tasks += [asyncio.create_task(s.poll(stop)) for s in sims]
    if alarms:
        tasks += [asyncio.create_task(s.keep_warm(stop)) for s in sims if s.ping_every > 0]
    # Every hub in its rhythm: each sent once since the connect phase (bulk connections idle through that phase were
    # closed by the register and are open again), so the measured time holds no reconnect storm of the bench's own.
    await asyncio.sleep(2.0 if alarms else args["every"] + 2.0)
    pipe.send("ready")
    # The hubs go on meanwhile (the main process first measures the steady fleet alone): waited for in a thread.
    await asyncio.to_thread(pipe.recv)  # go
    latencies: list[float] = []
    latencies_main: list[float] = []
    lags: list[float] = []
    catchup_acks: list[tuple[int, float]] = []  # (readings, seconds to the ack)
    connected: list[float] = []
    reused: list[float] = []
    pinged: list[float] = []
    unpinged: list[float] = []
    start = time.monotonic()
    base = dict(counts)
    if role == "B":
        tasks += [asyncio.create_task(drain(sims[i], bodies[i], stop, counts, catchup_acks)) for i in bodies]
    if alarms and args["alarm_rate"] > 0:

        async def one(sim: SimHub, due: float) -> None:
            lags.append(time.monotonic() - due)
            took = await sim.alarm()
            baseline = args["compare_main"] and sim.urls["alarm"] == sim.url
            (latencies_main if baseline else latencies).append(took)
            if not baseline:
                (connected if sim.alarm_connected else reused).append(took)
                (pinged if sim.ping_every > 0 else unpinged).append(took)

        sent: list[asyncio.Task[None]] = []
        due = start
        while True:
            due += rng.expovariate(args["alarm_rate"])
            if due - start >= args["duration"]:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            # A hub has one alarm connection: the next alarm goes from a hub whose last one was acknowledged.
            sim = rng.choice(sims)
            while sim.alarm_busy:
                sim = rng.choice(sims)
            sent.append(asyncio.create_task(one(sim, due)))
        await asyncio.sleep(max(0.0, start + args["duration"] - time.monotonic()))
        elapsed = time.monotonic() - start
        await asyncio.gather(*sent)  # the last alarms' acks count too (sent within the measured time)
    else:
        await asyncio.sleep(args["duration"])
        elapsed = time.monotonic() - start
    done = {k: counts[k] - base[k] for k in counts}
    pipe.send(
        {
            "elapsed": elapsed,
            "counts": done,
            "latencies": latencies,
            "latencies_main": latencies_main,
            "lags": lags,
            "catchup_acks": catchup_acks,
            "connected": connected,
            "reused": reused,
            "pinged": pinged,
            "unpinged": unpinged,
        }
    )
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in sims:
        await s.close()


def load_process(role: str, hubs: list[Hub], url: str, ca: str, args: dict[str, Any], pipe: Connection) -> None:
    global COLUMNS
    COLUMNS = args["wire"] == "columns"
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if role == "alarms" and args["alarm_sender_nice"]:
        # A real hub sends from a machine of its own; here the sender shares the cores with the fleet, and its own
        # delays (its lag, and reading the ack late) are in the alarm figures unless it goes first.
        os.nice(args["alarm_sender_nice"])
    asyncio.run(_load(role, hubs, url, ca, args, pipe))


async def one_hub_catchup(hub: Hub, url: str, ca: str, backlog: int, most: int) -> float:
    sim = SimHub(hub, url, ca)
    try:
        bodies = catchup_bodies(hub.hub_id, backlog, T0 - 60 * 86_400, most)
        await sim.post("bulk", "readings", readings_body(hub.hub_id, 2_000_000_000, 1, time.time()))  # connected
        start = time.perf_counter()
        stored = 0
        for _n, body in bodies:
            stored += (await sim.post("bulk", "readings", body))["stored"]
        elapsed = time.perf_counter() - start
        assert stored == backlog, (stored, backlog)
        return backlog / elapsed
    finally:
        await sim.close()


async def small_requests(hub: Hub, url: str, ca: str, pid: int, n: int, per: int, seq: int = 3_000_000_000) -> float:
    """Register CPU-seconds per request for ``n`` requests of ``per`` readings (a steady hub's send), one after
    another on one kept-alive connection with the register otherwise idle: its cost per request, without the
    fleet's connections, handshakes and queues."""
    sim = SimHub(hub, url, ca, ("bulk",))
    bodies = [readings_body(hub.hub_id, seq + i * per, per, T0 + i) for i in range(n)]
    try:
        await sim.post("bulk", "readings", readings_body(hub.hub_id, seq - 1, 1, T0))  # connected
        cpu0 = tree_cpu_s(pid)
        for body in bodies:
            await sim.post("bulk", "readings", body)
        return (tree_cpu_s(pid) - cpu0) / n
    finally:
        await sim.close()


async def idle_alarms(hub: Hub, url: str, ca: str, n: int, alarm_url: str | None) -> list[float]:
    sim = SimHub(hub, url, ca, alarm_url=alarm_url)
    sim.alarm_seq = 10_000_000
    try:
        await sim.alarm()  # connect
        return [await sim.alarm() for _ in range(n)]
    finally:
        await sim.close()


# ------------------------------------------------------------------------------------------------------ raw COPY


def stored_readings(dsn: str) -> int:
    """Readings stored, in rows and chunks alike (cloud_sync/register/chunks.py: written by default, rows only with
    ``--serve-arg=--no-readings-chunks``)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM readings) + (SELECT coalesce(sum(n), 0) FROM reading_chunks)"
        ).fetchone()
    return int(row[0]) if row else 0


def raw_copy_rate(dsn: str, n: int) -> float:
    """Rows per second of binary COPY of the readings' narrow rows from Python on one connection, into a table with
    no index (the ceiling the register's ingest is compared with)."""
    rows = [("hub_0123456789abcdef", i, "hh_0123456789abcdef", f"zigbee:{i % 60:02d}", "temperature", 21.5, T0 + i, T0)
            for i in range(n)]  # fmt: skip
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE raw_copy (hub_id text, seq int8, household_id text, device_id text, quantity text,"
            " value float8, ts float8, received_at float8)"
        )
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_copy FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "text", "text", "text", "float8", "float8", "float8"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE raw_copy")
        conn.commit()
    return n / elapsed


# ------------------------------------------------------------------------------------------------------ report


def alarms_of(results: list[dict[str, Any]], key: str = "latencies") -> list[float]:
    return [x for r in results for x in r[key]]


def p50(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else float("nan")


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))] if s else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubs", type=int, default=2000)
    ap.add_argument("--sources", type=int, default=50, help="loopback source addresses the hubs are spread over")
    ap.add_argument("--sensors", type=int, default=60)
    ap.add_argument("--period", type=float, default=30.0, help="seconds between two readings of one sensor")
    ap.add_argument("--send-every", type=float, default=1.0, help="seconds between a steady hub's sends (store: 1 s)")
    ap.add_argument("--catchup-hubs", type=int, default=40)
    ap.add_argument("--backlog", type=int, default=100_000, help="readings each catching-up hub holds")
    ap.add_argument("--alarm-rate", type=float, default=20.0, help="smoke alarms per second over the fleet")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    ap.add_argument(
        "--steady-window", type=float, default=20.0, help="seconds the steady fleet alone is measured first"
    )
    ap.add_argument(
        "--alarm-sender-nice",
        type=int,
        default=0,
        help="niceness increment of the alarm sender process (negative, as root: it stands for hubs on machines of"
        " their own, so its own scheduling delays leave the alarm figures)",
    )
    ap.add_argument("--one-hub-backlog", type=int, default=100_000)
    ap.add_argument("--copy-rows", type=int, default=1_000_000)
    ap.add_argument("--no-commands", action="store_true", help="hubs hold no command long-poll")
    ap.add_argument("--workers", type=int, default=2, help="register worker processes (serve --workers; default 2)")
    ap.add_argument("--small-requests", type=int, default=1000, help="one hub's sends timed alone, for CPU each")
    ap.add_argument("--alarm-port", type=int, default=0, help="the alarm listener port (default: a free one)")
    ap.add_argument("--no-alarm-listener", action="store_true", help="no alarm listener: alarms go to the main port")
    ap.add_argument(
        "--no-compare-main",
        action="store_true",
        help="send no alarms to the main port (by default every other hub does: the baseline in the same run)",
    )
    ap.add_argument(
        "--alarm-keepalive",
        type=float,
        default=120.0,
        help="seconds between a hub's pings of its alarm connection (the hub's default 120; 0: none)",
    )
    ap.add_argument(
        "--compare-keepalive",
        action="store_true",
        help="half the hubs sending alarms to the listener do not ping: the baseline in the same run",
    )
    ap.add_argument("--serve-arg", action="append", default=[], help="one more argument for kotihub-register serve")
    ap.add_argument(
        "--wire",
        choices=("columns", "items"),
        default="columns",
        help="how the hubs send their readings: as columns (a hub's way with a register that takes them) or items",
    )
    ap.add_argument(
        "--batch-max",
        type=int,
        default=UplinkSection().batch_items_max,
        help=f"uplink.batch_items_max: the most a catch-up batch grows to ({BATCH}: batches that never grow)",
    )
    args = ap.parse_args()
    global COLUMNS
    COLUMNS = args.wire == "columns"
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the register

    tmp = Path(tempfile.mkdtemp(prefix="kotihub-fleet-"))
    cluster = start_cluster()
    reg: RegisterProcess | None = None
    try:
        dbname = cluster.create_database()
        url_db = cluster.url(dbname)
        dsn = f"{cluster.admin_dsn(dbname)}"
        hub_dir = tmp / "hubs"
        hub_dir.mkdir()
        t = time.perf_counter()
        hubs = enroll_hubs(tmp / "register", url_db, args.hubs + 2, hub_dir, args.sources)
        print(f"enrolled {len(hubs)} hubs in {time.perf_counter() - t:.1f} s")
        serve = ["--db", url_db, "--workers", str(args.workers), *args.serve_arg]
        if not args.no_alarm_listener:
            serve += ["--alarm-port", str(args.alarm_port or free_port())]
        reg = RegisterProcess(tmp / "register", *serve)
        reg.start()
        if args.workers > 1 or not args.no_alarm_listener:
            deadline = time.monotonic() + 120
            while not any("workers listening" in line for line in reg.lines):
                if time.monotonic() > deadline:
                    raise SystemExit("the register's workers did not start:\n" + "".join(reg.lines[-30:]))
                time.sleep(0.1)
        url, ca = reg.url, str(reg.ca_file)
        alarm_url = announced_alarm_url(url, ca)
        alarm_pid = listener_pid(reg.pid, int(alarm_url.rsplit(":", 1)[1])) if alarm_url else None
        print(f"register: {args.workers} worker(s); alarms to {alarm_url or url} (alarm listener pid {alarm_pid})")
        loner, alarmer, fleet = hubs[0], hubs[1], hubs[2:]

        per_send = max(1, round(args.sensors / args.period * args.send_every))
        per_request = asyncio.run(small_requests(loner, url, ca, reg.pid, args.small_requests, per_send))
        one_hub = asyncio.run(one_hub_catchup(loner, url, ca, args.one_hub_backlog, args.batch_max))
        idle = asyncio.run(idle_alarms(alarmer, url, ca, 200, alarm_url))

        per_s = args.sensors / args.period
        shared = {
            "per_s": per_s,
            "every": args.send_every,
            "catchup_hubs": args.catchup_hubs,
            "backlog": args.backlog,
            "alarm_rate": args.alarm_rate,
            "duration": args.duration,
            "commands": not args.no_commands,
            "alarm_url": alarm_url,
            "alarm_sender_nice": args.alarm_sender_nice,
            "compare_main": alarm_url is not None and not args.no_compare_main,
            "alarm_keepalive": args.alarm_keepalive,
            "compare_keepalive": args.compare_keepalive,
            "wire": args.wire,
            "batch_max": args.batch_max,
        }
        ctx = multiprocessing.get_context("spawn")
        half = len(fleet) // 2
        pipes, procs = [], []
        t = time.perf_counter()
        for role, part in (("A", fleet[:half]), ("B", fleet[half:]), ("alarms", fleet)):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=load_process, args=(role, part, url, ca, shared, theirs), daemon=True)
            proc.start()
            pipes.append(ours)
            procs.append(proc)
        for pipe in pipes:
            if not pipe.poll(600):
                raise SystemExit("a load process did not get its hubs connected within 10 minutes")
            assert pipe.recv() == "ready"
        print(f"{len(fleet)} hubs connected in {time.perf_counter() - t:.1f} s; measuring {args.duration:.0f} s")
        # The steady fleet alone first (every hub's sends, long-polls and pings; no catch-up, no alarms yet): what
        # homes cost the register per second, the extrapolation's base. A catch-up's readings come 20,000 to a
        # request and a home's 40, so the run's cost per reading says nothing of it.
        steady_rows0 = stored_readings(dsn)
        steady_reg0, steady_pg0, steady_t0 = tree_cpu_s(reg.pid), postgres_cpu_s(cluster), time.monotonic()
        time.sleep(args.steady_window)
        steady_wall = time.monotonic() - steady_t0
        steady_reg = tree_cpu_s(reg.pid) - steady_reg0
        steady_pg = postgres_cpu_s(cluster) - steady_pg0
        steady_rows = stored_readings(dsn) - steady_rows0
        rows_before = stored_readings(dsn)
        alarm_cpu0 = tree_cpu_s(alarm_pid) if alarm_pid else 0.0
        reg_cpu0, pg_cpu0, t0 = tree_cpu_s(reg.pid), postgres_cpu_s(cluster), time.monotonic()
        load_cpu0 = sum(cpu_s(proc.pid) for proc in procs if proc.pid is not None)
        load0 = os.getloadavg()[0]
        for pipe in pipes:
            pipe.send("go")
        results = [pipe.recv() for pipe in pipes]
        wall = time.monotonic() - t0
        reg_cpu, pg_cpu = tree_cpu_s(reg.pid) - reg_cpu0, postgres_cpu_s(cluster) - pg_cpu0
        alarm_cpu = tree_cpu_s(alarm_pid) - alarm_cpu0 if alarm_pid else 0.0
        load_cpu = sum(cpu_s(proc.pid) for proc in procs if proc.pid is not None) - load_cpu0
        load1 = os.getloadavg()[0]
        for proc in procs:
            proc.join(60)
        rows_after = stored_readings(dsn)
        with psycopg.connect(dsn) as conn:
            size = conn.execute("SELECT sum(pg_total_relation_size(t) + coalesce((SELECT sum("
                                "pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = t), 0))"
                                " FROM unnest(ARRAY['readings'::regclass, 'reading_chunks'::regclass]) t"
                                ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        reg.stop()
        reg = None
        copy_rate = raw_copy_rate(dsn, args.copy_rows)
    finally:
        if reg is not None:
            reg.stop()
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    steady = sum(r["counts"]["steady"] for r in results)
    alarms_main = alarms_of(results, "latencies_main")
    requests = sum(r["counts"]["requests"] for r in results) + len(alarms_of(results)) + len(alarms_main)
    catchup = sum(r["counts"]["catchup"] for r in results)
    stored = rows_after - rows_before
    rate = stored / wall
    alarms = alarms_of(results)
    per_100k = 100_000 / max(stored, 1)
    bytes_per = float(size) / max(rows_after, 1)
    print()
    held = "2 connections (alarm, bulk)" if args.no_commands else "3 connections (alarm, bulk, command long-poll)"
    print(f"load average during the run: {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores (other work included)")
    print(
        f"hubs: {len(fleet)} x {held}; {per_s:.1f} readings/s each steady, sent every {args.send_every:g} s"
        f" as {args.wire}"
    )
    print(f"stored in {wall:.1f} s: {stored:,} readings ({steady:,} steady, {catchup:,} catch-up acked)")
    acks: list[tuple[int, float]] = [a for r in results for a in r["catchup_acks"]]
    sizes = page_sizes(args.backlog, args.batch_max)
    # The batches whose ack let the next one double (those under the most; the most's own acks decide nothing).
    growing = [took for n, took in acks if n < args.batch_max]
    print(
        f"catch-up batches: {', '.join(f'{n:,}' for n in sizes[:4])}, ... readings (batch_items {BATCH:,},"
        f" batch_items_max {args.batch_max:,}); acks p99 {p99([t for _n, t in acks]):.2f} s (n={len(acks)})"
    )
    if growing and args.batch_max > BATCH:
        verdict = "so a hub grows them as sent here" if max(growing) < GROW_S else "NOT all: a hub would not grow all"
        print(
            f"  acks of the batches under the most: max {max(growing):.2f} s (n={len(growing)}); the uplink doubles"
            f" the next batch after an ack within {GROW_S:g} s: {verdict}"
        )
    print(f"sustained ingest:            {rate:12,.0f} readings/s   (target {TARGET_RATE:,})")
    print(f"raw binary COPY, 1 conn:     {copy_rate:12,.0f} rows/s")
    print(f"share of raw COPY:           {rate / copy_rate:12.1%}        (target {TARGET_SHARE:.0%})")
    print(f"register CPU per 100k:       {reg_cpu * per_100k:12.2f} s   ({reg_cpu:.1f} s over the run, all processes)")
    if alarm_pid:
        print(f"alarm listener's CPU:        {alarm_cpu / wall:12.3f} cores  ({alarm_cpu:.1f} s over the run)")
    print(f"PostgreSQL CPU per 100k:     {pg_cpu * per_100k:12.2f} s   ({pg_cpu:.1f} s over the run)")
    print(
        f"load processes' CPU:         {load_cpu / wall:12.2f} cores  ({load_cpu:.1f} s over the run, 2 processes:"
        " TLS, HTTP and the steady batches' encoding; catch-up batches are encoded before the run)"
    )
    print(
        f"ingest requests answered:    {requests:12,}     "
        f"({reg_cpu / max(requests, 1) * 1000:.2f} ms register CPU each, long-polls aside)"
    )
    target = f"target < {TARGET_ALARM_P99_MS:.0f}"
    where = "to the alarm listener" if alarm_url else "to the main port"
    print(f"alarm p99 under load:        {p99(alarms) * 1000:12.1f} ms  (n={len(alarms)} {where}, {target})")
    print(f"alarm p50 under load:        {p50(alarms) * 1000:12.1f} ms")
    if alarms_main:
        print(
            f"  the same run, main port:   {p99(alarms_main) * 1000:12.1f} ms p99, {p50(alarms_main) * 1000:.1f} ms p50"
            f" (n={len(alarms_main)}); alarm listener / main port: p99 {p99(alarms) / p99(alarms_main):.2f},"
            f" p50 {p50(alarms) / p50(alarms_main):.2f}"
        )
    kinds = (
        ("connected", "on a new connection (TLS handshake)"),
        ("reused", "on a kept-alive connection"),
        ("pinged", f"from hubs pinging every {args.alarm_keepalive:g} s"),
        ("unpinged", "from hubs not pinging"),
    )
    for key, what in kinds:
        xs = alarms_of(results, key)
        if xs:
            print(f"  {what + ':':<36} {p99(xs) * 1000:.1f} ms p99, {p50(xs) * 1000:.1f} ms p50 (n={len(xs)})")
    lags = alarms_of(results, "lags")
    print(f"alarm sender's lag p99:      {p99(lags) * 1000:12.1f} ms  (how late the bench sent them: its own wall)")
    print(f"alarm p99 register idle:     {p99(idle) * 1000:12.1f} ms  (n={len(idle)})")
    print(f"catch-up of one hub (idle):  {one_hub:12,.0f} readings/s   (target {TARGET_ONE_HUB:,})")
    print(
        f"one request of {per_send} (idle):   {per_request * 1000:12.2f} ms register CPU"
        f"  ({args.small_requests} in a row on one connection)"
    )
    print(f"PostgreSQL bytes per reading (table + indexes): {bytes_per:.0f}")
    print()
    homes_here = len(fleet)
    home_reg, home_pg = steady_reg / steady_wall / homes_here, steady_pg / steady_wall / homes_here
    print(
        f"steady fleet alone ({steady_wall:.0f} s before the catch-up): {steady_rows / steady_wall:,.0f} readings/s,"
        f" register {steady_reg / steady_wall:.2f} cores, PostgreSQL {steady_pg / steady_wall:.2f} cores"
        f" ({home_reg * 1e6:.0f} / {home_pg * 1e6:.0f} micro-cores a home: sends, long-polls, pings)"
    )
    # A catch-up reading's cost: the measured window's CPU less the steady fleet's share of it, over what caught up.
    catch_reg = max(0.0, reg_cpu - steady_reg / steady_wall * wall) / max(catchup, 1)
    catch_pg = max(0.0, pg_cpu - steady_pg / steady_wall * wall) / max(catchup, 1)
    print(
        f"a catch-up reading: register {catch_reg * 1e5:.2f} s, PostgreSQL {catch_pg * 1e5:.2f} s per 100,000"
        " (the window's CPU less the steady fleet's)"
    )
    print()
    print(
        "extrapolation (60 sensors / 30 s per home, 183 days kept; steady: this run's steady fleet alone per home;"
        " x5 burst: that plus catch-up at four times the steady rate, at this run's catch-up cost per reading)"
    )
    head = ("homes", "steady r/s", "reg cores", "pg cores", "x5 burst cores", "PG size", "conns")
    print("{:>9} {:>11} {:>10} {:>9} {:>15} {:>9} {:>9}".format(*head))
    for homes in (50_000, 500_000):
        r = homes * per_s
        rc, pc = homes * home_reg, homes * home_pg
        burst = rc + pc + 4 * r * (catch_reg + catch_pg)
        tb = r * 86_400 * 183 * bytes_per / 1e12
        print(f"{homes:>9,} {r:>11,.0f} {rc:>10.1f} {pc:>9.1f} {burst:>15.1f} {tb:>7.1f}TB {3 * homes:>9,}")


if __name__ == "__main__":
    main()
