"""A real mosquitto on 127.0.0.1 for tests, the demo and benchmarks: ``with start_mosquitto(workdir) as broker``.

The broker gets a generated config (one loopback listener, anonymous access, no persistence) in ``workdir`` and a
free port; start-up waits until the port accepts connections (polling, not a fixed sleep). ``restart()`` stops it
and starts it again on the same port, which is how tests prove that clients reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    """One mosquitto process; iterable as ``(host, port)``."""

    def __init__(
        self, workdir: Path, port: int | None = None, *, executable: str | None = None, extra_config: str = ""
    ) -> None:
        self.workdir = Path(workdir)
        self.extra_config = extra_config
        self.host = HOST
        self.port = port or free_port()
        self.executable = executable or shutil.which("mosquitto") or MOSQUITTO
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"

    def __iter__(self) -> Iterator[str | int]:
        return iter((self.host, self.port))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            f"listener {self.port} {self.host}\npersistence false\n"
            # Started as root, mosquitto would switch to its own user and lose access to files in workdir.
            + ("user root\n" if os.geteuid() == 0 else "")
            + "log_dest stderr\nlog_type error\nlog_type warning\n"
            # extra_config replaces the anonymous default (e.g. with a password_file).
            + (self.extra_config or "allow_anonymous true\n")
        )
        with self.log_file.open("ab") as log_out:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.config_file)], stdout=log_out, stderr=subprocess.STDOUT
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            # Waiting on the process doubles as the poll interval and notices an early exit (port taken...).
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=0.02)
                self._proc = None
                raise RuntimeError(f"mosquitto exited with {code}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mosquitto did not accept connections on {self.host}:{self.port}")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart(self) -> None:
        """Stops the broker (dropping every client) and starts it again on the same port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def start_mosquitto(workdir: Path, port: int | None = None, *, extra_config: str = "") -> Iterator[MosquittoBroker]:
    """A running mosquitto for the ``with`` block; ``host, port = broker`` works too. ``extra_config`` replaces
    ``allow_anonymous true`` (e.g. with a ``password_file``)."""
    broker = MosquittoBroker(workdir, port, extra_config=extra_config)
    for attempt in range(3):
        try:
            broker.start()
            break
        except RuntimeError:
            # The free port was taken between choosing it and binding it; choose again.
            if attempt == 2 or port is not None:
                raise
            broker = MosquittoBroker(workdir, extra_config=extra_config)
    try:
        yield broker
    finally:
        broker.stop()
