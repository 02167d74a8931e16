"""A small miIO device on UDP, for tests and ``kotihub demo``: a plain device or a lumi.gateway.v3 with sub-devices.

It speaks the real protocol (:mod:`drivers.miio.packet`): it answers the hello handshake and ``miIO.info``, and as a
gateway the calls python-miio 0.5.12's ``miio.gateway`` makes (``get_device_prop ["lumi.0", "device_list"]``,
``get_device_prop_exp [[sid, ...]]``, ``get_battery [sid]``, ``get_illumination``), plus the raw smoke query the
driver sends itself. Values are realistic and can be changed while it runs, e.g. :meth:`SimulatedGateway.smoke`.

Use::

    async with MiioSimulator(SimulatedGateway.demo(token), host="127.0.0.1", port=0) as sim:
        ...  # sim.port is the bound port; sim.answering = False makes it go silent
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from drivers.miio import packet
from drivers.miio.values import SMOKE_CODES
from gateway.model import SmokeState

log = logging.getLogger(__name__)

ERR_METHOD: Final = -32601
ERR_ARGS: Final = -5001
ERR_SUBDEVICE: Final = -5005
"""Our choice: which code lumi firmware uses for a Zigbee child that does not answer is not documented."""


DEMO_HT_SID: Final = "lumi.158d0001a2b3c4"
DEMO_WEATHER_SID: Final = "lumi.158d0002b3c4d5"
DEMO_SMOKE_SID: Final = "lumi.158d0003c4d5e6"


class SimError(Exception):
    """A miio error reply (``{"error": {"code": .., "message": ..}}``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class SimSubDevice:
    """A Zigbee sub-device behind the gateway. ``props`` hold raw values as the gateway reports them."""

    sid: str
    type_id: int
    """python-miio's subdevices.yaml type id: 10 lumi.sensor_ht.v1, 19 lumi.weather.v1, 15 lumi.sensor_smoke."""
    props: dict[str, int]
    battery: int = 100
    fw_ver: int = 3
    lost: bool = False
    """True: the gateway still lists it but every query about it gets an error reply (out of Zigbee range)."""


@dataclass
class SimulatedDevice:
    """A plain miIO device: hello and ``miIO.info``."""

    did: int
    token: bytes
    model: str = "zhimi.airmonitor.v1"
    mac: str = "04:CF:8C:00:00:01"
    fw_ver: str = "1.4.1_176"
    started: float = field(default_factory=time.monotonic)
    stamp_base: int = 0x5F5E1000

    def stamp(self) -> int:
        return (self.stamp_base + int(time.monotonic() - self.started)) & 0xFFFFFFFF

    def info(self) -> dict[str, Any]:
        # Shape of a real miIO.info reply (python-miio's DeviceInfo docstring); addresses are documentation ranges.
        return {
            "life": int(time.monotonic() - self.started),
            "cfg_time": 0,
            "model": self.model,
            "mac": self.mac,
            "fw_ver": self.fw_ver,
            "hw_ver": "MW300",
            "mmfree": 30312,
            "ot": "otu",
            "ott_stat": [0, 0, 0, 0],
            "otu_stat": [320, 267, 3, 0, 3, 742],
            "ap": {"ssid": "kotihub-test", "bssid": "02:00:00:00:00:01", "rssi": -58},
            "netif": {"localIp": "192.0.2.10", "mask": "255.255.255.0", "gw": "192.0.2.1"},
        }

    def call(self, method: str, params: Any, request: dict[str, Any]) -> Any:
        if method == "miIO.info":
            return self.info()
        raise SimError(ERR_METHOD, "Method not found.")


@dataclass
class SimulatedGateway(SimulatedDevice):
    """A lumi.gateway.v3 with Zigbee sub-devices, answering what python-miio 0.5.12 asks."""

    model: str = "lumi.gateway.v3"
    subdevices: dict[str, SimSubDevice] = field(default_factory=dict)
    illumination: int = 1292

    @classmethod
    def demo(cls, token: bytes, did: int = 0x0574A2F3) -> SimulatedGateway:
        """A gateway with a temperature/humidity sensor, a weather sensor (with pressure) and a smoke detector."""
        gw = cls(did=did, token=token, mac="78:11:DC:00:00:01")
        gw.add(SimSubDevice(DEMO_HT_SID, 10, {"temperature": 2154, "humidity": 4830}, battery=87))
        gw.add(SimSubDevice(DEMO_WEATHER_SID, 19, {"temperature": 1921, "humidity": 5512, "pressure": 100230}, 93))
        gw.add(SimSubDevice(DEMO_SMOKE_SID, 15, {"alarm": 0, "density": 0}, battery=100))
        return gw

    def add(self, sub: SimSubDevice) -> None:
        self.subdevices[sub.sid] = sub

    def smoke(self, sid: str, state: SmokeState = SmokeState.SMOKE, density: int = 12) -> None:
        """Puts a smoke detector into ``state`` (smoke, test, fault, clear, battery_low) via its alarm code."""
        code = next((c for c, known in SMOKE_CODES.items() if known is state), None)
        if code is None:
            raise ValueError(f"a lumi smoke detector has no alarm code for {state.value}")
        self.subdevices[sid].props.update(alarm=code, density=density if state is SmokeState.SMOKE else 0)

    def weather(self, sid: str, temperature: float, humidity: float, pressure_hpa: float | None = None) -> None:
        """Sets what a temperature/humidity sensor reports (stored as the gateway's hundredths and Pa)."""
        props = self.subdevices[sid].props
        props.update(temperature=round(temperature * 100), humidity=round(humidity * 100))
        if pressure_hpa is not None:
            props["pressure"] = round(pressure_hpa * 100)

    def _sub(self, sid: Any) -> SimSubDevice:
        if not isinstance(sid, str) or sid not in self.subdevices:
            raise SimError(ERR_ARGS, "invalid sid")
        if self.subdevices[sid].lost:
            raise SimError(ERR_SUBDEVICE, "sub-device not responding")
        return self.subdevices[sid]

    def call(self, method: str, params: Any, request: dict[str, Any]) -> Any:
        if method == "get_device_prop" and isinstance(params, list) and len(params) == 2:
            sid, prop = params
            if sid == "lumi.0":
                return self._gateway_prop(prop)
            sub = self._sub(sid)
            if prop not in sub.props:
                raise SimError(ERR_ARGS, "invalid property")
            return [sub.props[prop]]
        if method == "get_device_prop_exp" and isinstance(params, list) and params and isinstance(params[0], list):
            out = []
            for query in params:
                if not query:
                    raise SimError(ERR_ARGS, "empty query")
                sub = self._sub(query[0])
                # A property the device does not have reads as 0, like the real gateway's "invalid" default.
                out.append([sub.props.get(str(name), 0) for name in query[1:]])
            return out
        if method == "get_battery" and isinstance(params, list) and len(params) == 1:
            return [self._sub(params[0]).battery]
        if method == "get_illumination":
            return [self.illumination]
        return super().call(method, params, request)

    def _gateway_prop(self, prop: Any) -> Any:
        if prop == "device_list":
            # Flat 5-tuples [sid, type_id, unknown, unknown2, fw_ver]; the gateway lists itself first as lumi.0.
            flat: list[Any] = ["lumi.0", 0, 0, 0, 0]
            for sub in self.subdevices.values():
                flat += [sub.sid, sub.type_id, 1, 0, sub.fw_ver]
            return flat
        if prop == "tzone_sec":
            return [7200]
        raise SimError(ERR_ARGS, "invalid property")


def demo_table(port: int, *, kind: str = "gateway", poll_interval: float = 10.0) -> dict[str, Any]:
    """A ``[drivers.miio]`` table pointing the driver at a simulator on ``127.0.0.1:port`` (for ``kotihub demo``).

    The token goes into credentials as ``miio.token.127.0.0.1`` (hex), never into this table.
    """
    return {
        "devices": [{"host": "127.0.0.1", "port": port, "kind": kind, "poll_interval": poll_interval}],
        "discovery": True,
        "discovery_target": "127.0.0.1",
        "discovery_port": port,
        "timeout": 1.0,
        "backoff_initial": 1.0,
        "backoff_max": 30.0,
    }


class MiioSimulator(asyncio.DatagramProtocol):
    """Serves one simulated device on a UDP socket; an async context manager."""

    def __init__(self, device: SimulatedDevice, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.answering = True
        """False makes the device silent (as if unplugged); requests are still counted."""
        self.requests: list[str] = []
        """Methods received, in order (``"hello"`` for handshakes)."""
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def __aenter__(self) -> MiioSimulator:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        """Waits until ``method`` has been received ``count`` times in all (``TimeoutError`` otherwise)."""

        def done() -> bool:
            return self.requests.count(method) >= count

        if done():
            return
        entry = (done, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        finally:
            self._waiters.remove(entry)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self._answer(data)
        if reply is not None and self.answering and self._transport is not None:
            self._transport.sendto(reply, addr)

    def _note(self, method: str) -> None:
        self.requests.append(method)
        for predicate, waiter in self._waiters:
            if not waiter.done() and predicate():
                waiter.set_result(None)

    def _answer(self, data: bytes) -> bytes | None:
        dev = self.device
        if packet.is_hello(data):
            self._note("hello")
            return packet.encode_hello_reply(device_id=dev.did, stamp=dev.stamp())
        request, _, reason = packet.decode_json(data, dev.token)
        if request is None:
            self.malformed += 1
            log.debug("simulator ignored a packet: %s", reason)
            return None
        method = request.get("method")
        rid = request.get("id")
        if not isinstance(method, str):
            self.malformed += 1
            return None
        self._note(method)
        reply: dict[str, Any] = {"id": rid}
        try:
            reply["result"] = dev.call(method, request.get("params", []), request)
        except SimError as err:
            reply["error"] = {"code": err.code, "message": err.message}
        except (TypeError, ValueError, IndexError, KeyError):
            # Oddly shaped parameters: a real device answers with an argument error rather than falling over.
            reply["error"] = {"code": ERR_ARGS, "message": "invalid params"}
        return packet.encode_json(reply, token=dev.token, device_id=dev.did, stamp=dev.stamp())
