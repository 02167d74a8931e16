"""``kotihub-register serve --workers N [--alarm-port P]``: N register processes on one port (SO_REUSEPORT), on
PostgreSQL, and with ``--alarm-port`` one more serving only the alarm lane (:mod:`cloud_sync.register.alarm_listener`),
the N workers niced under it (``Settings.bulk_nice``).

Each worker is the whole single-process register (its TLS connection gate, server certificate rotation, command
wake-ups, notification dispatch) binding its own listening socket with ``SO_REUSEPORT``; the kernel spreads new
connections over the workers. Not uvicorn's ``--workers``: that runs uvicorn's own server from an import string,
without the register's server and per-process set-up, and one shared accept queue instead of one per worker. This
parent only prepares what they share (schema, CA, server certificate, metrics directory), starts the workers,
restarts one that dies and stops them all on SIGTERM/SIGINT.

``SO_REUSEPORT`` would also let a second register of the same user, started by mistake on the same port, join the
port's group and take half the hubs. So before anything else the parent takes a claim on each port it will serve
(:func:`claim_port`), then binds it once without ``SO_REUSEPORT`` (:func:`probe_port`): either fails while another
register holds the claim or any process listens there, and the start is refused (:class:`PortTaken`) before the
schema, the CA, the metrics directory or a worker is touched. The probe alone left a window: between it and the
workers' binds a second register started in the same instant passed it too. The claim is taken in one atomic bind
and held by the parent until it exits, so of two such starts exactly one goes on. The supervisor's restart of one
worker does not probe again: its siblings still hold the port, and it rejoins their group.

What each worker holds in memory is divided by N (:func:`per_worker`): the body budget and the rate-limit
bursts and connection caps, which are per process. Everything else they share lives in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from types import FrameType
from typing import Any

from cloud_sync.register.settings import MIN_BODY_BUDGET, Settings

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
"""Restarts allowed within :data:`RESTART_WINDOW_S` before the parent gives up (a worker that cannot start)."""
RESTART_WINDOW_S = 60.0


class WorkersRefused(Exception):
    """The register cannot run several workers as configured (permanent)."""


class PortTaken(WorkersRefused):
    """Another process listens on a port this register would serve; nothing was started (permanent)."""


def _taken(what: str, host: str, port: int) -> PortTaken:
    return PortTaken(
        f"{what} {port} on {host} is held by another process (is a register already running there?); "
        "nothing was started"
    )


def claim_name(host: str, port: int) -> bytes:
    """The abstract ``AF_UNIX`` name of the claim on ``host:port``: the address ``host`` resolves to, so that
    ``localhost`` and ``127.0.0.1`` are one claim."""
    addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][4]
    return f"\0kotihub-register:{addr[0]}:{port}".encode()


def claim_port(host: str, port: int, what: str = "--port") -> socket.socket:
    """This process's claim on ``host:port``, held while the returned socket is open: :class:`PortTaken` if another
    process holds it.

    An abstract ``AF_UNIX`` name: binding it is atomic, and the kernel frees it when its last descriptor closes, so
    also when the holder is killed (SIGKILL) — no lock file to go stale. Abstract names, like the port, belong to a
    network namespace. The socket is not inheritable, so the workers do not hold the claim: it ends with the parent
    (and orphaned workers still listening are refused by :func:`probe_port`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(claim_name(host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _taken(what, host, port) from exc
        raise WorkersRefused(f"cannot claim {what} {port} on {host}: {exc.strerror}; nothing was started") from exc
    return sock


def probe_port(host: str, port: int, what: str = "--port") -> None:
    """Binds ``host:port`` once with ``SO_REUSEADDR`` only, and closes it: :class:`PortTaken` if another process
    listens there (with or without ``SO_REUSEPORT``), :class:`WorkersRefused` if it cannot be bound at all. Connections
    left in TIME_WAIT by a register that just stopped do not count (that is what ``SO_REUSEADDR`` allows)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _taken(what, host, port) from exc
            raise WorkersRefused(f"cannot bind {what} {port} on {host}: {exc.strerror}; nothing was started") from exc


def per_worker(settings: Settings, workers: int) -> Settings:
    """The settings of one of ``workers`` processes: what is held per process, divided among them."""

    def share(total: int, floor: int = 1) -> int:
        return max(floor, math.ceil(total / workers))

    return dataclasses.replace(
        settings,
        body_budget_bytes=share(settings.body_budget_bytes, MIN_BODY_BUDGET),
        auth_failure_burst=share(settings.auth_failure_burst),
        enroll_burst=share(settings.enroll_burst),
        max_connections_per_source=share(settings.max_connections_per_source),
        max_anonymous_connections=share(settings.max_anonymous_connections),
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes of this user can bind as well."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Linux lets only sockets of the same user join a port's group, so no other account can take connections.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(settings: Settings, host: str, port: int, index: int, ready: SimpleQueue[int]) -> None:
    from cloud_sync.register import server  # imported here: after PROMETHEUS_MULTIPROC_DIR is set

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker{index} %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers; a terminal's ^C reaches all
    if settings.alarm_port is not None and settings.bulk_nice:
        # Below the alarm listener: when the CPU is short, bulk ingest waits, not a smoke alarm. Raising one's own
        # nice value needs no privilege.
        os.nice(settings.bulk_nice)
    server.serve(
        settings,
        host=host,
        port=port,
        sockets=[listening_socket(host, port)],
        retention=index == 0,  # one purge per hour is enough; the others would only wait on its locks
        on_ready=lambda: ready.put(index),
    )


def _alarm_listener(settings: Settings, host: str, port: int, index: int, ready: SimpleQueue[int]) -> None:
    from cloud_sync.register import server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s alarm %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server.serve(
        settings,
        host=host,
        port=port,
        sockets=[listening_socket(host, port)],
        retention=False,
        on_ready=lambda: ready.put(index),
        alarm_only=True,
    )


def serve(settings: Settings, *, workers: int, host: str, port: int) -> int:
    """Run ``workers`` register processes (and the alarm listener's, with ``settings.alarm_port``) until
    SIGTERM/SIGINT; returns the exit status."""
    if workers < 1 or (workers < 2 and settings.alarm_port is None):
        raise WorkersRefused("--workers must be at least 1")
    if not settings.database_url.startswith("postgresql"):
        raise WorkersRefused(
            "several workers need PostgreSQL (--db postgresql+psycopg://…), and so does the alarm listener: SQLite "
            "takes one writer at a time, so an alarm in a process of its own would still wait for bulk ingest's "
            "writes, and command wake-ups cross processes only through PostgreSQL"
        )
    if settings.alarm_port == port:
        raise WorkersRefused("--alarm-port must differ from --port")
    # Before anything is changed: the metrics directory below is the running register's if it shares our state.
    # The claims first (the probe alone does not stop a register started in the same instant), held until we exit.
    ports = [(port, "--port")]
    if settings.alarm_port is not None:
        ports.append((settings.alarm_port, "--alarm-port"))
    with contextlib.ExitStack() as claims:
        for p, what in ports:
            claims.enter_context(claim_port(host, p, what))
        for p, what in ports:
            probe_port(host, p, what)
        return _serve_claimed(settings, workers, host, port)


def _serve_claimed(settings: Settings, workers: int, host: str, port: int) -> int:
    from cloud_sync.register.registry import Registry

    metrics_dir = settings.state_dir / "metrics"
    # Counters of a previous run would be added to this one's.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700, parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Once, before any worker: the schema upgrade, the CA and the server certificate (workers reuse them).
    from cloud_sync.register import servercert

    reg = Registry(settings)
    try:
        servercert.current_or_new(
            reg.ca, settings.state_dir, ["localhost", "127.0.0.1", host], days=settings.server_cert_days
        )
    finally:
        reg.close()
    return _Supervisor(per_worker(settings, workers), workers, host, port).run()


class _Supervisor:
    def __init__(self, settings: Settings, workers: int, host: str, port: int) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.settings, self.count, self.host, self.port = settings, workers, host, port
        # The alarm listener is one more process, index ``workers``, restarted like the others.
        self.total = workers + (settings.alarm_port is not None)
        self.ready: SimpleQueue[int] = self.ctx.SimpleQueue()
        self.procs: dict[int, BaseProcess] = {}
        self.restarts: list[float] = []
        self.stopping = False

    def _name(self, index: int) -> str:
        return "alarm listener" if index == self.count else f"worker{index}"

    def _start(self, index: int) -> None:
        if index == self.count:
            assert self.settings.alarm_port is not None
            target, port, name = _alarm_listener, self.settings.alarm_port, "register-alarm"
        else:
            target, port, name = _worker, self.port, f"register-worker{index}"
        p = self.ctx.Process(target=target, args=(self.settings, self.host, port, index, self.ready), name=name)
        p.start()
        self.procs[index] = p

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for i in range(self.total):
            self._start(i)
        started = 0
        status = 0
        while not self.stopping:
            while started < self.total and not self.ready.empty():
                self.ready.get()
                started += 1
                if started == self.total:
                    log.info("register: %d workers listening on %s:%d", self.count, self.host, self.port)
                    if self.settings.alarm_port is not None:
                        log.info("register: alarm listener on %s:%d", self.host, self.settings.alarm_port)
            sentinels: list[Any] = [p.sentinel for p in self.procs.values()]
            wait(sentinels, timeout=0.2)
            for index, p in list(self.procs.items()):
                if p.is_alive() or self.stopping:
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    log.error("register %s exited with %s; too many restarts, stopping", self._name(index), p.exitcode)
                    self.stopping, status = True, 1
                    break
                log.warning("register %s exited with %s; restarting it", self._name(index), p.exitcode)
                self._start(index)
        for p in self.procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
        return status
