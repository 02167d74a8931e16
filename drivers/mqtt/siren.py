"""Sirens over MQTT: Zigbee2MQTT sirens (their ``warning`` payload) and Shelly/Tasmota relays configured as sirens.

Commands go out on a connection of their own, kept open, so sounding a siren never waits for a connect (or for
the driver's message loop). Payloads follow the devices' documented interfaces:

* Zigbee2MQTT (IAS WD, e.g. Heiman HS2WD-E, Develco SIRZB-110): ``<prefix>/<ieee>/set`` with
  ``{"warning": {"mode": "fire", "level": "very_high", "strobe": true, "duration": …}}``, and ``mode: stop``;
  Zigbee2MQTT addresses a device by friendly name or IEEE address, and the IEEE address survives renames.
* Tasmota: ``cmnd/<topic>/POWER<n>`` with ``ON``/``OFF``.
* Shelly Gen2+: ``<prefix>/rpc`` with JSON-RPC ``Switch.Set {id, on}``; Gen1: ``shellies/<id>/relay/<n>/command``
  with ``on``/``off``.

Commands are QoS 1 and never retained: a retained "on" would sound the siren again after every reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Final, Literal

import aiomqtt
import msgspec

from drivers.mqtt.common import mqtt_id, raise_if_cancelled
from gateway.backoff import Backoff
from gateway.errors import TransientError
from gateway.model import DeviceInfo, DeviceKind

log = logging.getLogger(__name__)

SIREN_DURATION_S: Final = 1800
"""How long a Zigbee siren sounds unless silenced (it stops by itself after this, a safety net)."""


class SirenRelay(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[drivers.mqtt.sirens]]``: a relay that drives a siren."""

    family: Literal["tasmota", "shelly"]
    topic: Annotated[str, msgspec.Meta(pattern=r"^[^#+/\x00]([^#+\x00]*[^#+/\x00])?$")]
    """Tasmota: the device topic; Shelly Gen2: the topic prefix; Shelly Gen1: the device id."""
    channel: Annotated[int, msgspec.Meta(ge=0, le=31)] = 0
    """Tasmota: POWER index (0 means plain ``POWER``); Shelly: switch/relay id."""
    shelly_gen: Literal[1, 2] = 2
    room: str = ""

    @property
    def device_id(self) -> str:
        return mqtt_id(f"siren:{self.family}:{self.topic}:{self.channel}")

    def info(self) -> DeviceInfo:
        return DeviceInfo(
            device_id=self.device_id,
            driver="mqtt",
            kind=DeviceKind.SIREN,
            model=f"{self.family} relay",
            room=self.room,
            address=self.topic,
            # Reachable when the relay's node is: its LWT/online state is the siren's.
            via=mqtt_id(f"tasmota:{self.topic}") if self.family == "tasmota" else mqtt_id(f"shelly:{self.topic}"),
        )

    def command(self, on: bool) -> tuple[str, bytes]:
        if self.family == "tasmota":
            suffix = str(self.channel) if self.channel else ""
            return f"cmnd/{self.topic}/POWER{suffix}", b"ON" if on else b"OFF"
        if self.shelly_gen == 1:
            return f"shellies/{self.topic}/relay/{self.channel}/command", b"on" if on else b"off"
        rpc = {"id": 1, "src": "kotihub", "method": "Switch.Set", "params": {"id": self.channel, "on": on}}
        return f"{self.topic}/rpc", json.dumps(rpc).encode()


def z2m_command(info: DeviceInfo, on: bool) -> tuple[str, bytes] | None:
    """The set topic and payload for a Zigbee2MQTT siren (``via`` names its bridge), or None if not one."""
    if info.kind is not DeviceKind.SIREN or not info.via.endswith("/bridge") or not info.address.startswith("0x"):
        return None
    prefix = info.via.removeprefix("mqtt:").removesuffix("/bridge")
    warning = (
        {"mode": "fire", "level": "very_high", "strobe": True, "duration": SIREN_DURATION_S}
        if on
        else {"mode": "stop", "level": "low", "strobe": False, "duration": 0}
    )
    return f"{prefix}/{info.address}/set", json.dumps({"warning": warning}).encode()


class MqttSirens:
    """Publishes siren commands on its own broker connection (reconnecting with backoff)."""

    def __init__(
        self,
        client_factory: Callable[[], Awaitable[aiomqtt.Client]],
        relays: Iterable[SirenRelay],
        zigbee: Callable[[], Iterable[DeviceInfo]],
    ) -> None:
        self._factory = client_factory
        self.relays = tuple(relays)
        self._zigbee = zigbee
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self.published = 0
        self.failed = 0

    def devices(self) -> list[DeviceInfo]:
        return [r.info() for r in self.relays]

    def commands(self, on: bool) -> list[tuple[str, bytes]]:
        out = [r.command(on) for r in self.relays]
        for info in self._zigbee():
            cmd = z2m_command(info, on)
            if cmd is not None:
                out.append(cmd)
        return out

    async def run(self) -> None:
        backoff = Backoff(0.2, 10.0)
        while True:
            client = await self._factory()
            try:
                async with client:
                    raise_if_cancelled()  # aiomqtt awaited CONNACK with wait_for, which can drop a cancel
                    self._client = client
                    self._connected.set()
                    backoff.reset()
                    # Nothing is subscribed: iterating only notices a lost connection (it raises MqttError), so a
                    # broker restart reconnects instead of leaving every later siren command to fail.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                log.warning("siren connection to the MQTT broker lost (%s)", exc)
            finally:
                self._connected.clear()
                self._client = None
            raise_if_cancelled()
            await asyncio.sleep(backoff.next())

    async def sound(self, on: bool, *, wait: float = 2.0) -> int:
        """Sends the command to every siren; returns how many were published. :class:`TransientError` if there is
        no connection to the broker within ``wait`` seconds (the caller tries again)."""
        try:
            async with asyncio.timeout(wait):
                await self._connected.wait()
        except TimeoutError:
            self.failed += 1
            log.error("cannot %s the sirens: no connection to the MQTT broker", "sound" if on else "silence")
            raise TransientError("no connection to the MQTT broker") from None
        client = self._client
        assert client is not None
        sent = 0
        for topic, payload in self.commands(on):
            try:
                await client.publish(topic, payload, qos=1, retain=False)
                sent += 1
            except aiomqtt.MqttError as exc:
                self.failed += 1
                log.error("a siren command was not published: %s", exc)
        self.published += sent
        return sent
