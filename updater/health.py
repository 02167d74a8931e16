"""When a release counts as healthy: the daemon answers on its control socket as the new version (it sends READY to
systemd only after the store is open and the socket listens), ``selftest`` has no FAIL, and, unless the hub runs
without the register, the uplink has had a successful reply from the register since the switch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.control import ControlError, DaemonUnreachable, call


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def probe(socket: Path, *, version: str, require_uplink: bool, since: float) -> Verdict:
    """One look at the running daemon (``since`` is the wall-clock time of the switch)."""
    try:
        status: dict[str, Any] = call(socket, "status", timeout=10)
    except (DaemonUnreachable, ControlError, OSError, ValueError) as exc:
        return Verdict(False, f"the daemon does not answer: {exc}")
    running = status.get("hub", {}).get("version")
    if running != version:
        return Verdict(False, f"the daemon answering runs {running!r}, not {version}")
    try:
        checks: list[dict[str, Any]] = call(socket, "selftest", {"alarm_test": False}, timeout=60)
    except (DaemonUnreachable, ControlError, OSError, ValueError) as exc:
        return Verdict(False, f"selftest did not run: {exc}")
    failed = sorted(str(c.get("check")) for c in checks if c.get("status") == "fail")
    if failed:
        return Verdict(False, f"selftest FAIL: {', '.join(failed)}")
    if require_uplink:
        last_ok = (status.get("uplink") or {}).get("replies", {}).get("last_ok_at")
        if not isinstance(last_ok, int | float) or last_ok < since:
            return Verdict(False, "the uplink has not reached the register since the switch")
    return Verdict(True, "ready, selftest without FAIL" + (", uplink reached the register" if require_uplink else ""))


def wait_healthy(
    look: Callable[[], Verdict],
    window_s: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Looks until healthy or ``window_s`` has passed. ``alive`` false (the service manager saw the process exit)
    ends the wait at once: a release that crashes at start need not use up the whole window."""
    deadline = clock() + window_s
    last = Verdict(False, "not looked at yet")
    while True:
        last = look()
        if last.healthy:
            return last
        if not alive():
            return Verdict(False, f"the daemon exited ({last.reason})")
        if clock() >= deadline:
            return Verdict(False, f"not healthy within {window_s:.0f} s: {last.reason}")
        sleep(poll_s)
