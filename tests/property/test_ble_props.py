"""Property tests for the BLE decoders: encode → decode round-trips, and arbitrary bytes never raise."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import atc, bthome, mibeacon, ruuvi
from drivers.ble.common import Decoded, Rejected, ReplayState, uuid16
from drivers.ble.decode import decode_advertisement
from drivers.ble.driver import BleConfig, BleDriver
from gateway.model import EventKind, Quantity, SmokeState
from kotihub_tools.simulators.ble_replay import Recording
from tests.support import ble_encode
from tests.support.ble_vectors import all_vectors
from tests.support.recording_hub import RecordingHub

macs = st.binary(min_size=6, max_size=6)
keys = st.binary(min_size=16, max_size=16)
# The machine is shared with other test runs: judge correctness, not wall-clock time per example.
relaxed = settings(deadline=None)


def _address(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


def _values(decoded: Decoded | Rejected | None) -> dict[Quantity, float]:
    assert isinstance(decoded, Decoded), decoded
    return {r.quantity: r.value for r in decoded.readings}


@relaxed
@given(
    mac=macs,
    temp=st.integers(-32768, 32767),
    hum=st.integers(0, 65535),
    battery=st.integers(0, 255),
    pressure=st.integers(0, 2**24 - 1),
    smoke=st.booleans(),
    key=st.none() | keys,
    include_mac=st.booleans(),
    counter=st.integers(0, 2**32 - 1),
)
def test_bthome_round_trip(
    mac: bytes,
    temp: int,
    hum: int,
    battery: int,
    pressure: int,
    smoke: bool,
    key: bytes | None,
    include_mac: bool,
    counter: int,
) -> None:
    objects = (
        bytes([0x01, battery])
        + b"\x02"
        + temp.to_bytes(2, "little", signed=True)
        + b"\x03"
        + hum.to_bytes(2, "little")
        + b"\x04"
        + pressure.to_bytes(3, "little")
        + bytes([0x29, int(smoke)])
    )
    sd = ble_encode.bthome(objects, mac=mac, include_mac=include_mac, key=key, counter=counter)
    decoded = bthome.decode(_address(mac), {bthome.SERVICE_UUID: sd}, bindkey=key, state=ReplayState())
    assert _values(decoded) == {
        Quantity.BATTERY: battery,
        Quantity.TEMPERATURE: round(temp * 0.01, 2),
        Quantity.HUMIDITY: round(hum * 0.01, 2),
        Quantity.PRESSURE: round(pressure * 0.01, 2),
    }
    assert isinstance(decoded, Decoded)
    assert [(e.kind, e.state) for e in decoded.events] == [
        (EventKind.SMOKE, SmokeState.SMOKE if smoke else SmokeState.CLEAR)
    ]


@relaxed
@given(
    mac=macs,
    temp=st.integers(-32768, 32767),
    hum=st.integers(0, 65535),
    battery=st.integers(0, 100),
    key=st.none() | keys,
    frame=st.integers(0, 255),
    ext=st.integers(0, 2**24 - 1),
)
def test_mibeacon_round_trip(
    mac: bytes, temp: int, hum: int, battery: int, key: bytes | None, frame: int, ext: int
) -> None:
    objects = ble_encode.mi_object(
        0x100D, temp.to_bytes(2, "little", signed=True) + hum.to_bytes(2, "little")
    ) + ble_encode.mi_object(0x100A, bytes([battery]))
    sd = ble_encode.mibeacon(objects, product_id=0x055B, frame_counter=frame, mac=mac, key=key, ext_counter=ext)
    decoded = mibeacon.decode(_address(mac), {mibeacon.SERVICE_UUID: sd}, bindkey=key, state=ReplayState())
    assert _values(decoded) == {Quantity.TEMPERATURE: temp / 10, Quantity.HUMIDITY: hum / 10, Quantity.BATTERY: battery}


@relaxed
@given(
    mac=macs,
    temp=st.integers(-32768, 32767),
    hum=st.integers(0, 255),
    battery=st.integers(0, 255),
    mv=st.integers(0, 65535),
    counter=st.integers(0, 255),
)
def test_atc1441_round_trip(mac: bytes, temp: int, hum: int, battery: int, mv: int, counter: int) -> None:
    sd = ble_encode.atc1441(mac, temp, hum, battery, mv, counter)
    assert _values(atc.decode(_address(mac), {atc.SERVICE_UUID: sd})) == {
        Quantity.TEMPERATURE: temp / 10,
        Quantity.HUMIDITY: hum,
        Quantity.BATTERY: battery,
        Quantity.VOLTAGE: mv / 1000,
    }


@relaxed
@given(
    mac=macs,
    temp=st.integers(-32768, 32767),
    hum=st.integers(0, 65535),
    mv=st.integers(0, 65535),
    battery=st.integers(0, 255),
    counter=st.integers(0, 255),
    flags=st.integers(0, 255),
)
def test_pvvx_round_trip(mac: bytes, temp: int, hum: int, mv: int, battery: int, counter: int, flags: int) -> None:
    sd = ble_encode.pvvx(mac, temp, hum, mv, battery, counter, flags)
    assert _values(atc.decode(_address(mac), {atc.SERVICE_UUID: sd})) == {
        Quantity.TEMPERATURE: temp / 100,
        Quantity.HUMIDITY: hum / 100,
        Quantity.BATTERY: battery,
        Quantity.VOLTAGE: mv / 1000,
    }


@relaxed
@given(
    mac=macs,
    temp=st.integers(-32768, 32767),
    hum=st.integers(0, 65535),
    pressure=st.integers(0, 65535),
    acc=st.tuples(*[st.integers(-32768, 32767)] * 3),
    battery=st.integers(0, 2047),
    tx=st.integers(0, 31),
    movement=st.integers(0, 255),
    seq=st.integers(0, 65535),
)
def test_ruuvi_round_trip(
    mac: bytes,
    temp: int,
    hum: int,
    pressure: int,
    acc: tuple[int, int, int],
    battery: int,
    tx: int,
    movement: int,
    seq: int,
) -> None:
    sd = ble_encode.ruuvi5(temp, hum, pressure, acc, battery, tx, movement, seq, mac)
    expected: dict[Quantity, float] = {}
    if temp != -32768:
        expected[Quantity.TEMPERATURE] = temp / 200
    if hum != 65535:
        expected[Quantity.HUMIDITY] = hum / 400
    if pressure != 65535:
        expected[Quantity.PRESSURE] = (pressure + 50000) / 100
    if battery != 2047:
        expected[Quantity.VOLTAGE] = (battery + 1600) / 1000
    assert _values(ruuvi.decode(_address(mac), {ruuvi.COMPANY_ID: sd})) == expected


FORMAT_KEYS = [uuid16(0xFCD2), uuid16(0x181A), uuid16(0xFE95)]
addresses = st.sampled_from(["A4:C1:38:02:83:F4", "54:48:E6:8F:80:A5", "not-a-mac", ""]) | macs.map(_address)


@relaxed
@given(
    address=addresses,
    service_data=st.dictionaries(st.sampled_from([*FORMAT_KEYS, uuid16(0x180F)]), st.binary(max_size=300)),
    manufacturer_data=st.dictionaries(st.sampled_from([0x0499, 0x004C]), st.binary(max_size=300)),
    key=st.none() | keys | st.binary(max_size=20),
)
def test_arbitrary_bytes_never_raise(
    address: str, service_data: dict[str, bytes], manufacturer_data: dict[int, bytes], key: bytes | None
) -> None:
    state = ReplayState()
    for _ in range(2):  # twice, so the second pass meets the state the first one left
        for result in decode_advertisement(address, service_data, manufacturer_data, bindkey=key, state=state):
            assert isinstance(result, Decoded | Rejected)


@relaxed
@given(prefix=st.sampled_from([b"\x40", b"\x41", b"\x42", b"\x44", b"\x45"]), rest=st.binary(max_size=64))
def test_bthome_structured_garbage_never_raises(prefix: bytes, rest: bytes) -> None:
    result = bthome.decode("54:48:E6:8F:80:A5", {bthome.SERVICE_UUID: prefix + rest}, bindkey=None, state=ReplayState())
    assert isinstance(result, Decoded | Rejected)


@relaxed
@given(
    header=st.sampled_from(["50305b05", "58585b05", "5859970909", "70305b05", "30305b05"]),
    rest=st.binary(max_size=40),
    key=st.none() | keys,
)
def test_mibeacon_structured_garbage_never_raises(header: str, rest: bytes, key: bytes | None) -> None:
    sd = bytes.fromhex(header) + rest
    result = mibeacon.decode("A4:C1:38:02:83:F4", {mibeacon.SERVICE_UUID: sd}, bindkey=key, state=ReplayState())
    assert isinstance(result, Decoded | Rejected)


VECTORS = all_vectors()


@relaxed
@given(vector=st.sampled_from(VECTORS), cut=st.integers(0, 40), flip=st.integers(0, 40), bit=st.integers(0, 7))
def test_damaged_real_vectors_never_raise(vector: dict[str, object], cut: int, flip: int, bit: int) -> None:
    """Real vectors cut short or with one bit flipped: never an exception; and encrypted BTHome, whose every byte is
    authenticated, never yields a value once damaged."""
    service_data = {k: bytearray(v) for k, v in vector["service_data"].items()}  # type: ignore[attr-defined]
    manufacturer_data = {k: bytearray(v) for k, v in vector["manufacturer_data"].items()}  # type: ignore[attr-defined]
    damaged = False
    for payload in (*service_data.values(), *manufacturer_data.values()):
        damaged = flip < len(payload) or (cut > 0 and len(payload) > 0)
        if flip < len(payload):
            payload[flip] ^= 1 << bit
        del payload[len(payload) - min(cut, len(payload)) :]
    results = decode_advertisement(
        str(vector["address"]),
        {k: bytes(v) for k, v in service_data.items()},
        {k: bytes(v) for k, v in manufacturer_data.items()},
        bindkey=vector["key"],  # type: ignore[arg-type]
        state=ReplayState(),
    )
    for result in results:
        assert isinstance(result, Decoded | Rejected)
        if damaged and vector["key"] is not None and result.fmt == "bthome":
            assert isinstance(result, Rejected)


@relaxed
@given(states=st.lists(st.booleans(), min_size=1, max_size=30), gaps=st.lists(st.floats(0, 100), min_size=30))
def test_driver_keeps_every_smoke_transition(states: list[bool], gaps: list[float]) -> None:
    """Whatever the timing, the hub sees each change of smoke state, in order; only unchanged repeats inside the
    dedupe window are dropped."""
    now = [1000.0]
    driver = BleDriver(BleConfig(adopt=("11:22:33:44:55:04",), dedupe_window_s=30.0), _NoKeys(), clock=lambda: now[0])
    hub = RecordingHub()
    expected: list[str] = []
    last: tuple[bool, float] | None = None
    for smoke, gap in zip(states, gaps, strict=False):
        now[0] += gap
        if last is None or last[0] != smoke or now[0] - last[1] >= 30.0:
            expected.append(SmokeState.SMOKE if smoke else SmokeState.CLEAR)
            last = (smoke, now[0])
        payload = {uuid16(0xFCD2): bytes([0x40, 0x29, int(smoke)])}
        driver.on_advertisement(*Recording("11:22:33:44:55:04", None, payload, {}, -60, "test").advertisement())
    asyncio.run(driver.flush(hub))
    assert [e.state for e in hub.events] == expected


class _NoKeys:
    def get(self, name: str) -> bytes | None:
        return None
