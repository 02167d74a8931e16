"""Stop-time benchmark (issue 12): how long ``kotihub run`` takes to exit after SIGTERM (target < 2 s).

Runs the real daemon (no drivers, a temporary state directory) and sends SIGTERM once it answers on its control
socket and has run for a moment, in three set-ups, several times each:

- ``no uplink`` — the baseline: the store flush and task cancellation alone;
- ``register up`` — the uplink syncing to ``kotihub-register serve`` on 127.0.0.1, a 25 s command long-poll in
  flight (before issue 12 this took up to the poll's length: its thread could not be cancelled);
- ``register down`` — the register killed, every lane retrying.

Prints the median and the worst stop time of each beside the baseline's (the ratio). Wall time: a busy machine
stretches every figure alike.

Run: ``.venv/bin/python bench/stop_time.py [--runs N] [--settle S]``. Not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from register_proc import RegisterProcess

from gateway.control import ControlError, DaemonUnreachable, call

REPO = Path(__file__).resolve().parents[1]


def config(root: Path, name: str, state: Path, register_url: str | None) -> Path:
    path = root / f"{name}.toml"
    text = f'[hub]\nstate_dir = "{state}"\nruntime_dir = "{root / "run"}"\n'
    if register_url is not None:
        text += f'[uplink]\nenabled = true\nregister_url = "{register_url}"\ncommand_poll_wait = 25.0\n'
    path.write_text(text)
    return path


def stop_time(config_path: Path, socket: Path, settle: float) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config_path)],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            call(socket, "status", timeout=5)
            break
        except (ControlError, DaemonUnreachable, OSError):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the daemon did not start") from None
            time.sleep(0.05)
    time.sleep(settle)  # let the uplink open its connections and start its long-poll
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the daemon exited with {proc.returncode}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds the daemon runs before SIGTERM")
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kotihub-stop-") as tmp:
        root = Path(tmp)
        reg = RegisterProcess(root / "register")
        reg.start()
        try:
            hub_dir = root / "hub"
            reg.enroll(hub_dir)
            socket = root / "run" / "control.sock"
            setups = [
                ("no uplink", config(root, "plain", root / "plain", None)),
                ("register up", config(root, "synced", hub_dir, reg.url)),
            ]
            for name, path in setups:
                results[name] = [stop_time(path, socket, args.settle) for _ in range(args.runs)]
            reg.stop()
            down = config(root, "down", hub_dir, reg.url)
            results["register down"] = [stop_time(down, socket, args.settle) for _ in range(args.runs)]
        finally:
            reg.stop()
    base = statistics.median(results["no uplink"])
    print(f"SIGTERM to exit, {args.runs} runs each (target < 2 s):")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"  {name:14s} median {median:6.3f} s  worst {max(times):6.3f} s  ({median / base:4.1f}x the baseline)")


if __name__ == "__main__":
    main()
