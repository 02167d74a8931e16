"""The register as a real process (``kotihub-register serve``), to SIGKILL and restart, or to run twice at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.postgres import free_port


class RegisterProcess:
    def __init__(
        self,
        state: Path,
        env: dict[str, str],
        *,
        db_url: str | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.state, self.db_url, self.args = state, db_url, args
        self.port = port or free_port()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state.parent / f"register-{self.port}.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        cmd = [sys.executable, "-m", "cloud_sync.register.cli", "serve", "--state", str(self.state)]
        cmd += ["--port", str(self.port), *self.args]
        if self.db_url:
            cmd += ["--db", self.db_url]
        env = {**os.environ, **self.env, "KOTIHUB_REGISTER_PUBLIC_URL": self.url}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        s = requests.Session()
        s.trust_env = False
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"register exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if (self.state / "ca.crt").exists():
                    s.get(f"{self.url}/v1/health", verify=str(self.state / "ca.crt"), timeout=2).raise_for_status()
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("register did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None
