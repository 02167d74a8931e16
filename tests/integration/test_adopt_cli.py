"""``kotihub adopt`` through the daemon: audited, persisted across a restart, and precise about bad ids."""

from __future__ import annotations

import signal
from pathlib import Path

from kotihub_tools.broker import MosquittoBroker
from tests.integration.test_daemon import HubProcess

DEVICE = "ble:a4:c1:38:02:83:f4"


def test_adopt_is_persisted_audited_and_refuses_what_it_cannot_adopt(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    hub = HubProcess(tmp_path, mosquitto, extra_config="[drivers.ble]\nenabled = true\nadapter_retry_s = 600\n")
    hub.start()
    try:
        assert hub.cli_json("adopt", DEVICE) == {"device_id": DEVICE, "adopted": True, "new": True}
        assert hub.cli_json("adopt", DEVICE.upper())["new"] is False
        bad = hub.cli("adopt", "ble:not-a-mac")
        assert bad.returncode != 0 and "MAC address" in bad.stderr
        other = hub.cli("adopt", "mqtt:0x00158d0001a2b3c4")
        assert other.returncode != 0 and "without adoption" in other.stderr
        code, _ = hub.stop(signal.SIGTERM)
        assert code == 0
        hub.start()
        assert hub.cli_json("status")["drivers"]["ble"]["adopted"] == 1
        assert hub.cli_json("adopt", DEVICE)["new"] is False
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.kill()
            hub.proc.wait()
