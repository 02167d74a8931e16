"""Restarting the daemon and asking whether it runs: systemd on a hub (the updater never runs the daemon itself)."""

from __future__ import annotations

import subprocess
from typing import Protocol


class Service(Protocol):
    def restart(self) -> None:
        """Stops the running daemon (SIGTERM: it flushes the store) and starts the one ``current`` points at."""

    def alive(self) -> bool:
        """False once the daemon has exited (crashed) and is not about to come back by itself."""


class SystemdService:
    def __init__(self, restart_command: list[str], active_command: list[str]) -> None:
        self.restart_command = restart_command
        self.active_command = active_command

    def restart(self) -> None:
        # `systemctl restart` of a Type=notify unit returns once the new daemon sent READY=1 or failed to start;
        # a start that fails is not an error here: the health window decides.
        subprocess.run(self.restart_command, capture_output=True, timeout=300, check=False)

    def alive(self) -> bool:
        # "activating" (restarting after a crash, RestartSec) still counts: systemd may yet bring it up.
        done = subprocess.run(self.active_command, capture_output=True, text=True, timeout=30, check=False)
        return done.stdout.strip() in ("active", "activating", "reloading")
