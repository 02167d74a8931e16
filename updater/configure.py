"""Remote configuration on the hub: validate a pushed ``kotihub.toml`` with ``kotihub config check``'s schema,
put it in place atomically, restart the daemon, and put the old file back if the daemon is not healthy (the
updater's health rule). Only the configuration file is ever written: the store and its keys are not touched, and a
push that would move the store (``[hub] state_dir``) is refused.

    kotihub.toml           the configuration the daemon reads
    kotihub.toml.previous  the one before the push being tried (restored on revert)
    config-state.json      (updater state dir) which push is on trial, so a power cut mid-trial is finished
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from cloud_sync.privatefile import write_private
from gateway import config as hub_config
from gateway.errors import ConfigError
from updater import health
from updater.health import Verdict
from updater.service import Service

log = logging.getLogger(__name__)


class Trial(msgspec.Struct):
    push_id: str
    started: float


@dataclass
class Configurer:
    config_path: Path
    state_file: Path
    service: Service
    look: Callable[[float], Verdict]
    """``look(since)``: one health probe of the running daemon."""
    window_s: float
    poll_s: float = 0.5

    @property
    def previous(self) -> Path:
        return self.config_path.with_name(self.config_path.name + ".previous")

    def check(self, text: str) -> str | None:
        """Why ``text`` may not be applied here, or None."""
        try:
            new = hub_config.parse(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            return f"not valid TOML: {exc}"
        except ConfigError as exc:
            return f"configuration refused: {exc}"
        try:
            old = hub_config.load(self.config_path if self.config_path.exists() else None)
        except ConfigError:
            return None  # the file in place is broken already: a valid one can only help
        if new.hub.state_dir != old.hub.state_dir:
            return "a pushed configuration may not move the store ([hub] state_dir)"
        return None

    def apply(self, push_id: str, text: str) -> tuple[str, str]:
        """``(outcome, detail)``: ``applied``, ``reverted`` or ``refused``."""
        why = self.check(text)
        if why is not None:
            return "refused", why
        mode = self.config_path.stat().st_mode & 0o777 if self.config_path.exists() else 0o644
        if self.config_path.exists():
            write_private(self.previous, self.config_path.read_bytes(), mode)
        since = time.time()
        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.state_file, msgspec.json.encode(Trial(push_id=push_id, started=since)))
        write_private(self.config_path, text.encode(), mode)
        log.info("configuration %s in place; restarting the daemon", push_id)
        self.service.restart()
        return self._judge(since)

    def _judge(self, since: float) -> tuple[str, str]:
        verdict = health.wait_healthy(
            lambda: self.look(since), self.window_s, alive=self.service.alive, poll_s=self.poll_s
        )
        if verdict.healthy:
            self.state_file.unlink(missing_ok=True)
            return "applied", verdict.reason
        log.error("the daemon is not healthy with the new configuration (%s): reverting", verdict.reason)
        if self.previous.exists():
            os.replace(self.previous, self.config_path)
            _sync_dir(self.config_path.parent)
        self.service.restart()
        self.state_file.unlink(missing_ok=True)
        return "reverted", verdict.reason

    def recover(self) -> tuple[str, str, str] | None:
        """A trial a power cut interrupted: judged afresh; ``(push_id, outcome, detail)``."""
        try:
            trial = msgspec.json.decode(self.state_file.read_bytes(), type=Trial)
        except FileNotFoundError:
            return None
        outcome, detail = self._judge(time.time())
        return trial.push_id, outcome, detail


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
