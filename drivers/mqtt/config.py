"""The ``[drivers.mqtt]`` configuration table."""

from __future__ import annotations

from typing import Annotated

import msgspec

from drivers.mqtt.decoders import DEFAULT_MAX_PAYLOAD, Families
from drivers.mqtt.siren import SirenRelay

# A topic prefix: no MQTT wildcards, no empty levels at the ends.
Prefix = Annotated[str, msgspec.Meta(pattern=r"^[^#+/\x00]([^#+\x00]*[^#+/\x00])?$")]
ShellyPrefix = Annotated[str, msgspec.Meta(pattern=r"^(\+|[^#+/\x00]([^#+\x00]*[^#+/\x00])?)$")]


class Zigbee2MqttFamily(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    prefix: Prefix = "zigbee2mqtt"


class HomeAssistantFamily(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    prefix: Prefix = "homeassistant"
    """The discovery prefix; state topics are whatever the discovery configs name."""


class TasmotaFamily(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    prefix: Prefix = "tele"


class ShellyFamily(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    prefixes: tuple[ShellyPrefix, ...] = ("+",)
    """Shelly topic prefixes; ``+`` matches any one-level prefix (a Shelly's default prefix is its device id)."""


class MqttConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[drivers.mqtt]``. The password is not here: it is the credential ``mqtt.password``."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1883
    tls: bool = False
    ca_file: str = ""
    """CA bundle for TLS; empty means the system's trust store."""
    username: str = ""
    client_id: str = "kotihub"
    keepalive: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 60
    persistent_session: bool = True
    """Keep the broker session across reconnects so QoS 1 messages sent meanwhile are delivered afterwards."""
    zigbee2mqtt: Zigbee2MqttFamily = msgspec.field(default_factory=Zigbee2MqttFamily)
    homeassistant: HomeAssistantFamily = msgspec.field(default_factory=HomeAssistantFamily)
    tasmota: TasmotaFamily = msgspec.field(default_factory=TasmotaFamily)
    shelly: ShellyFamily = msgspec.field(default_factory=ShellyFamily)
    dedupe_window: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """Seconds within which the same value of the same device is passed on once."""
    seen_interval: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """How often a device that keeps talking is re-announced to the hub (refreshes its last-seen time)."""
    reconnect_min: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    reconnect_max: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    max_payload: Annotated[int, msgspec.Meta(ge=1024)] = DEFAULT_MAX_PAYLOAD
    inflight_window: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 20
    """The broker's limit of unacknowledged messages in flight to the hub (mosquitto's ``max_inflight_messages``,
    20 by default). Messages are acknowledged only after their commit; when this many wait, the store commits at
    once instead of at its group-commit deadline. Set it to the broker's value: larger stalls the driver until
    the deadline whenever the window fills; smaller commits more often than needed."""
    max_held: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    """Messages naming a device not resolvable yet (Zigbee2MQTT's device list not received) kept, persisted,
    until it arrives; beyond this the oldest is dropped and counted (``held_dropped``)."""
    sirens: tuple[SirenRelay, ...] = ()
    """Shelly/Tasmota relays that drive sirens (``[[drivers.mqtt.sirens]]``); Zigbee sirens are discovered."""

    def __post_init__(self) -> None:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        if self.tls is False and self.ca_file:
            raise ValueError("ca_file is set but tls is false")

    def families(self) -> Families:
        return Families(
            zigbee2mqtt=self.zigbee2mqtt.prefix if self.zigbee2mqtt.enabled else None,
            homeassistant=self.homeassistant.prefix if self.homeassistant.enabled else None,
            tasmota=self.tasmota.prefix if self.tasmota.enabled else None,
            shelly=self.shelly.prefixes if self.shelly.enabled and self.shelly.prefixes else None,
        )
