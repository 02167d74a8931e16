"""The replay recordings are real vectors: each appears, byte for byte and with its address, among the golden
vectors, whose expected values then hold for the demo too."""

from __future__ import annotations

from kotihub_tools.simulators.ble_replay import RECORDED_BINDKEYS, RECORDINGS, RecordedCredentials
from tests.support.ble_vectors import all_vectors


def test_every_recording_is_a_golden_vector() -> None:
    golden = {
        (v["address"], tuple(v["service_data"].items()), tuple(v["manufacturer_data"].items())): v
        for v in all_vectors()
        if "rejected" not in v["expect"]  # the same bytes also appear as wrong-key and no-key cases
    }
    for recording in RECORDINGS:
        key = (recording.address, tuple(recording.service_data.items()), tuple(recording.manufacturer_data.items()))
        vector = golden.get(key)
        assert vector is not None, recording.source
        if vector["key"] is not None:
            name = "ble.bindkey." + recording.address.replace(":", "").lower()
            assert RecordedCredentials().get(name) == vector["bindkey"].encode()


def test_only_the_recordings_keys_are_held() -> None:
    assert RecordedCredentials().get("ble.bindkey.000000000000") is None
    assert set(RECORDED_BINDKEYS) == {
        "ble.bindkey." + r.address.replace(":", "").lower()
        for r in RECORDINGS
        if r.address in {"54:48:E6:8F:80:A5", "A4:C1:38:02:83:F4", "54:EF:44:E3:9C:BC"}
    }
