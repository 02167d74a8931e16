"""BLE decoders: advertisements decoded per second, ours beside the reference parsers, on the same real vectors.

Run: ``.venv/bin/python bench/decoders.py [--rounds N]`` after ``pip install -e .[bench]`` (bthome-ble, xiaomi-ble,
ruuvitag-sensor). Not a test: it prints figures, ratios, and where the decoded values differ from the reference.

Both sides start from what bleak hands over. The reference parsers take a ``BluetoothServiceInfoBleak`` (built
beforehand, outside the timing) or, for ruuvitag-sensor, the hex string its bleak adapter builds (that step is
timed, it is part of its path). Ours runs with replay state off (``state=None``) because a fixed vector repeated
is, correctly, a duplicate to a stateful decoder; bthome-ble's own duplicate filters are kept out of the way by
stamping each repetition with a later time, and every reference call is checked to have produced values.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bleak.backends.device import BLEDevice  # noqa: E402
from bleak.backends.scanner import AdvertisementData  # noqa: E402

from drivers.ble.common import Decoded, uuid16  # noqa: E402
from drivers.ble.decode import decode_advertisement  # noqa: E402

VECTOR_DIR = ROOT / "tests" / "vectors" / "ble"


def load(name: str) -> list[dict[str, Any]]:
    doc = json.loads((VECTOR_DIR / f"{name}.json").read_text())
    out = []
    for v in doc["vectors"]:
        if "rejected" in v["expect"]:
            continue  # benchmark the decoding path; malformed input is covered by the tests
        payload = bytes.fromhex(v["payload"])
        if "uuid16" in doc:
            v["sd"], v["md"] = {uuid16(int(doc["uuid16"], 16)): payload}, {}
        else:
            v["sd"], v["md"] = {}, {int(doc["company_id"]): payload}
        v["key"] = bytes.fromhex(v["bindkey"]) if v.get("bindkey") else None
        out.append(v)
    return out


def rate(fn: Callable[[], int], calls: int) -> tuple[float, int]:
    start = time.perf_counter()
    produced = fn()
    return calls / (time.perf_counter() - start), produced


def ours(vectors: list[dict[str, Any]], rounds: int) -> tuple[float, int]:
    jobs = [(v["address"], v["sd"], v["md"], v["key"]) for v in vectors]

    def run() -> int:
        produced = 0
        for _ in range(rounds):
            for address, sd, md, key in jobs:
                for result in decode_advertisement(address, sd, md, bindkey=key, ts=0.0):
                    produced += isinstance(result, Decoded)
        return produced

    return rate(run, rounds * len(jobs))


def service_info(v: dict[str, Any], when: float) -> Any:
    from habluetooth import BluetoothServiceInfoBleak

    adv = AdvertisementData(None, v["md"], v["sd"], list(v["sd"]), None, -60, ())
    return BluetoothServiceInfoBleak(
        name=v["address"],
        address=v["address"],
        rssi=-60,
        manufacturer_data=v["md"],
        service_data=v["sd"],
        service_uuids=list(v["sd"]),
        source="local",
        device=BLEDevice(v["address"], None, None),
        advertisement=adv,
        connectable=False,
        time=when,
        tx_power=None,
    )


def ref_bthome(vectors: list[dict[str, Any]], rounds: int) -> tuple[float, int]:
    from bthome_ble import BTHomeBluetoothDeviceData

    jobs = []
    for v in vectors:
        # bthome-ble skips a packet id seen within 4 s, and an encrypted packet identical to the last one more
        # than 4 s later: step 5 s for plaintext and 1 s for encrypted so that every call really parses.
        step = 1.0 if v["key"] else 5.0
        infos = [service_info(v, 1000.0 + i * step) for i in range(rounds)]
        jobs.append((BTHomeBluetoothDeviceData(v["key"]), infos))

    def run() -> int:
        produced = 0
        for i in range(rounds):
            for parser, infos in jobs:
                update = parser.update(infos[i])
                produced += bool(update.entity_values or update.binary_entity_values or update.events)
        return produced

    return rate(run, rounds * len(jobs))


def ref_xiaomi(vectors: list[dict[str, Any]], rounds: int) -> tuple[float, int]:
    from xiaomi_ble import XiaomiBluetoothDeviceData

    jobs = [(XiaomiBluetoothDeviceData(v["key"]), service_info(v, 1000.0)) for v in vectors]

    def run() -> int:
        produced = 0
        for _ in range(rounds):
            for parser, info in jobs:
                update = parser.update(info)
                produced += bool(update.binary_entity_values or update.events or len(update.entity_values) > 1)
        return produced

    return rate(run, rounds * len(jobs))


def ref_ruuvi(vectors: list[dict[str, Any]], rounds: int) -> tuple[float, int]:
    from ruuvitag_sensor.adapters.bleak_ble import BleCommunicationBleak  # type: ignore[import-untyped]
    from ruuvitag_sensor.data_formats import DataFormats  # type: ignore[import-untyped]
    from ruuvitag_sensor.decoder import get_decoder  # type: ignore[import-untyped]

    payloads = [v["md"][0x0499] for v in vectors]

    def run() -> int:
        produced = 0
        for _ in range(rounds):
            for payload in payloads:
                # ruuvitag-sensor's own path from bleak's manufacturer data to values
                fmt, data = DataFormats.convert_data(BleCommunicationBleak._parse_data(payload))
                if fmt is not None and data is not None:
                    produced += get_decoder(fmt).decode_data(data) is not None
        return produced

    return rate(run, rounds * len(payloads))


# ---- value agreement ----------------------------------------------------------------------------------------------

REF_KEYS = {"temperature", "humidity", "pressure", "illuminance", "battery", "voltage"}


def our_values(v: dict[str, Any]) -> dict[str, Any]:
    (result,) = decode_advertisement(v["address"], v["sd"], v["md"], bindkey=v["key"])
    assert isinstance(result, Decoded)
    values: dict[str, Any] = {r.quantity.value: r.value for r in result.readings}
    for e in result.events:
        values[f"event:{e.kind.value}"] = str(e.state)
    return values


def sensor_update_values(update: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in update.entity_values.items():
        if key.key in REF_KEYS:
            values[key.key] = value.native_value
    for key, value in update.binary_entity_values.items():
        values[f"binary:{key.key}"] = value.native_value
    for key, value in update.events.items():
        values[f"event:{key.key}"] = value.event_type
    return values


def compare(name: str, ours_v: dict[str, Any], ref_v: dict[str, Any], tolerance: float) -> list[str]:
    problems = []
    for key, ref in ref_v.items():
        if key.startswith("binary:"):
            kind = key.split(":", 1)[1]
            mine = ours_v.get(f"event:{kind}")
            on = {"smoke": "smoke", "motion": "detected"}.get(kind)
            if on is None:
                continue
            if (mine == on) != bool(ref):
                problems.append(f"{name}: {kind} ours={mine} reference={ref}")
            continue
        if key.startswith("event:"):
            if ours_v.get(key) != ref:
                problems.append(f"{name}: {key} ours={ours_v.get(key)} reference={ref}")
            continue
        if key == "voltage" and "voltage" not in ours_v:
            problems.append(f"{name}: voltage reference={ref} (an estimate from battery %; ours reports none)")
            continue
        mine = ours_v.get(key)
        if mine is None or abs(mine - ref) > tolerance:
            problems.append(f"{name}: {key} ours={mine} reference={ref}")
    return problems


def agreement(fmt: str, vectors: list[dict[str, Any]]) -> tuple[int, list[str]]:
    problems: list[str] = []
    for v in vectors:
        mine = our_values(v)
        if fmt == "bthome":
            from bthome_ble import BTHomeBluetoothDeviceData

            ref = sensor_update_values(BTHomeBluetoothDeviceData(v["key"]).update(service_info(v, 1000.0)))
            problems += compare(v["name"], mine, ref, 1e-9)
        elif fmt == "mibeacon":
            from xiaomi_ble import XiaomiBluetoothDeviceData

            ref = sensor_update_values(XiaomiBluetoothDeviceData(v["key"]).update(service_info(v, 1000.0)))
            problems += compare(v["name"], mine, ref, 1e-9)
        elif fmt == "ruuvi":
            from ruuvitag_sensor.decoder import get_decoder

            raw = get_decoder(5).decode_data(v["md"][0x0499].hex())
            assert raw is not None
            ref = {k: raw[k] for k in ("temperature", "humidity", "pressure") if raw[k] is not None}
            if raw["battery"] is not None:
                ref["voltage"] = raw["battery"] / 1000
            problems += compare(v["name"], mine, ref, 0.005)  # it rounds to 2 decimals
    return len(vectors), problems


def differential(fmt: str, n: int) -> tuple[int, list[str]]:
    """Random well-formed payloads through both decoders; the values must agree (outside documented differences).
    Returns how many reference values were compared, and the disagreements."""
    rng = random.Random(6)
    problems: list[str] = []
    compared = 0
    address = "A4:C1:38:11:22:33"
    for i in range(n):
        if fmt == "bthome":
            from bthome_ble import BTHomeBluetoothDeviceData

            objs = {rng.choice([0x02, 0x45, 0x57, 0x58]): None, rng.choice([0x03, 0x2E]): None}
            objs.update(dict.fromkeys(rng.sample([0x01, 0x04, 0x05, 0x0C, 0x4A, 0x29, 0x21], 3)))
            if 0x0C in objs and 0x4A in objs:
                del objs[0x4A]
            from drivers.ble.bthome import OBJECTS

            body = b"".join(bytes([oid]) + rng.randbytes(OBJECTS[oid][0]) for oid in sorted(objs))
            v: dict[str, Any] = {
                "address": address,
                "sd": {uuid16(0xFCD2): b"\x40" + body},
                "md": {},
                "key": None,
                "name": f"#{i}",
            }
            ref = sensor_update_values(BTHomeBluetoothDeviceData().update(service_info(v, 1000.0)))
            compared += len(ref)
            problems += compare(f"{body.hex()}", our_values(v), ref, 1e-9)
        elif fmt == "mibeacon":
            from xiaomi_ble import XiaomiBluetoothDeviceData

            oid, size = rng.choice([(0x100D, 4), (0x1004, 2), (0x1006, 2), (0x100A, 1), (0x1015, 1)])
            data = rng.randbytes(size) if oid != 0x1015 else bytes([rng.randint(0, 1)])  # 2 = fault: we differ
            obj = oid.to_bytes(2, "little") + bytes([size]) + data
            sd = bytes.fromhex("5030470301") + bytes.fromhex(address.replace(":", ""))[::-1] + obj  # CGG1, v3
            v = {"address": address, "sd": {uuid16(0xFE95): sd}, "md": {}, "key": None, "name": f"#{i}"}
            ref = sensor_update_values(XiaomiBluetoothDeviceData().update(service_info(v, 1000.0)))
            if oid == 0x100A:
                ref.pop("voltage", None)  # xiaomi-ble estimates a voltage from the percentage; we report none
            compared += len(ref)
            problems += compare(obj.hex(), our_values(v), ref, 1e-9)
        elif fmt == "ruuvi":
            from ruuvitag_sensor.decoder import get_decoder

            payload = b"\x05" + rng.randbytes(17) + bytes.fromhex("CBB8334C884F")
            v = {"address": address, "sd": {}, "md": {0x0499: payload}, "key": None, "name": f"#{i}"}
            raw = get_decoder(5).decode_data(payload.hex())
            assert raw is not None
            ref = {k: raw[k] for k in ("temperature", "humidity", "pressure") if raw[k] is not None}
            if raw["battery"] is not None:
                ref["voltage"] = raw["battery"] / 1000
            compared += len(ref)
            problems += compare(payload.hex(), our_values(v), ref, 0.005 + 1e-9)
        else:
            return 0, []
    return compared, problems


def driver_callback(rounds: int) -> tuple[float, float]:
    """BleDriver.on_advertisement (relevance test, dedupe, key lookup, decode, queue) on the replay recordings:
    first with the dedupe window off (every call decodes; repeated encrypted packets stop at the replay check),
    then with it on (repeats stop at the fingerprint)."""
    from drivers.ble.driver import BleConfig, BleDriver
    from kotihub_tools.simulators.ble_replay import RECORDINGS, RecordedCredentials

    ads = [r.advertisement() for r in RECORDINGS]
    out = []
    for window in (0.0, 30.0):
        driver = BleDriver(
            BleConfig(adopt=("*",), dedupe_window_s=window, max_pending_readings=1000), RecordedCredentials()
        )

        def run(driver: BleDriver = driver) -> int:
            for _ in range(rounds):
                for device, adv in ads:
                    driver.on_advertisement(device, adv)
            return 0

        out.append(rate(run, rounds * len(ads))[0])
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="passes over each format's vectors")
    parser.add_argument("--fuzz", type=int, default=2000, help="random well-formed payloads per format compared")
    args = parser.parse_args()
    rounds: int = args.rounds
    print(f"Python {sys.version.split()[0]}, {rounds} rounds per format; advertisements decoded per second\n")
    print(f"{'format':<10} {'vectors':>7} {'ours/s':>12} {'reference/s':>12} {'ratio':>7}  reference")
    rows = [
        ("bthome", ref_bthome, "bthome-ble"),
        ("mibeacon", ref_xiaomi, "xiaomi-ble"),
        ("ruuvi", ref_ruuvi, "ruuvitag-sensor"),
        ("atc", None, "none on PyPI (theengs decoder needs a C++ build)"),
    ]
    all_problems: list[str] = []
    fuzz_lines: list[str] = []
    for fmt, ref_fn, ref_name in rows:
        vectors = load(fmt)
        our_rate, our_produced = ours(vectors, rounds)
        assert our_produced == rounds * len(vectors), "a vector failed to decode"
        if ref_fn is None:
            print(f"{fmt:<10} {len(vectors):>7} {our_rate:>12,.0f} {'-':>12} {'-':>7}  {ref_name}")
            continue
        ref_rate, ref_produced = ref_fn(vectors, rounds)
        note = "" if ref_produced == rounds * len(vectors) else f" (only {ref_produced} calls produced values)"
        print(
            f"{fmt:<10} {len(vectors):>7} {our_rate:>12,.0f} {ref_rate:>12,.0f} {our_rate / ref_rate:>6.1f}x  "
            f"{ref_name}{note}"
        )
        _, problems = agreement(fmt, vectors)
        all_problems += [f"[{fmt}] {p}" for p in problems]
        fuzzed, mismatches = differential(fmt, args.fuzz)
        fuzz_lines.append(
            f"  {fmt:<10} {args.fuzz} random payloads, {fuzzed} values compared, {len(mismatches)} disagreements"
        )
        all_problems += [f"[{fmt} fuzz] {p}" for p in mismatches[:5]]
    undeduped, deduped = driver_callback(rounds)
    print(f"\ndriver callback, every call decoded: {undeduped:,.0f}/s; with the 30 s dedupe window: {deduped:,.0f}/s")
    print("\nDifferential check on random well-formed payloads (same decoded values, object for object):")
    print("\n".join(fuzz_lines))
    print("\nValue agreement with the references (deliberate differences are documented in the decoders):")
    for problem in all_problems or ["none"]:
        print(f"  {problem}")


if __name__ == "__main__":
    main()
