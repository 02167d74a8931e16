"""The bench harness itself: given a bench file, the hardware tests run against what it describes and pass; what
it does not describe is reported as not run, with the reason. Here the "bench" is the simulators on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import AQARA_ID, run_simulator

REPO = Path(__file__).resolve().parents[2]


def test_bench_file_drives_the_hardware_tests(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    bench = tmp_path / "bench.toml"
    bench.write_text(
        f'credentials_dir = "{tmp_path}"\n'
        f'[mqtt]\nlisten_s = 30\ndevice_ids = ["{AQARA_ID}"]\n'
        f'[mqtt.driver]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
    )

    async def run() -> subprocess.CompletedProcess[str]:
        stop = asyncio.Event()
        sim = asyncio.create_task(run_simulator(mosquitto.host, mosquitto.port, stop=stop, interval=0.5))
        try:
            # The inner pytest's own per-test limit is tight (the bench's listen_s = 30); the outer one only bounds
            # a busy 2-core CI box starting a second interpreter with every plugin, which took most of the old
            # 120 s once. On a timeout, say what the inner run had printed instead of a bare "timed out".
            return await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--timeout", "90",
                 "tests/hil/test_bench.py"],
                cwd=REPO, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                env={**os.environ, "KOTIHUB_BENCH_FILE": str(bench)},
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the inner HIL run did not finish in 240 s; it printed:\n{exc.stdout!r}") from None
        finally:
            stop.set()
            await sim

    result = asyncio.run(run())
    assert "1 passed, 4 skipped" in result.stdout, result.stdout
    assert "no [ble] hardware described" in result.stdout
