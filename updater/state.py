"""``state.json``: what the updater is doing, written before each step so that a power cut at any point is
resumed by the next run (:meth:`updater.apply.Updater.recover`), and read by ``kotihub update status``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from cloud_sync.privatefile import write_private

Phase = Literal["idle", "trial"]
HISTORY = 20


class Attempt(msgspec.Struct, kw_only=True):
    version: str
    outcome: str
    detail: str = ""
    at: float = 0.0
    reported: bool = False


class State(msgspec.Struct, kw_only=True):
    phase: Phase = "idle"
    trial_version: str | None = None
    """The release being tried; ``current`` points at it from the switch until confirmed or rolled back."""
    trial_from: str | None = None
    trial_started: float | None = None
    history: list[Attempt] = []

    def record(self, version: str, outcome: str, detail: str = "") -> Attempt:
        attempt = Attempt(version=version, outcome=outcome, detail=detail[:500], at=time.time())
        self.history = [*self.history, attempt][-HISTORY:]
        return attempt

    def view(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def load(path: Path) -> State:
    try:
        return msgspec.json.decode(path.read_bytes(), type=State)
    except FileNotFoundError:
        return State()


def save(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, msgspec.json.encode(state))
