"""The ``[drivers.miio]`` table. Tokens are not here: they come from credentials as ``miio.token.<host>`` (hex)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]

MIIO_PORT = 54321


class DeviceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One miIO device to poll: a lumi gateway (its Zigbee sub-devices too) or a plain device."""

    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Port = MIIO_PORT
    kind: Literal["gateway", "device"] = "device"
    poll_interval: Seconds = 60.0


class MiioConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    devices: list[DeviceConfig] = msgspec.field(default_factory=list)
    discovery: bool = True
    """Whether ``kotihub discover`` sends the miIO hello."""
    discovery_target: str = "255.255.255.255"
    """Where the hello goes: the broadcast address on a real hub; 127.0.0.1 in tests and the demo."""
    discovery_port: Port = MIIO_PORT
    timeout: Seconds = 5.0
    """Seconds to wait for one reply from a device."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """How often python-miio resends a request that got no reply before the poll counts as failed."""
    backoff_initial: Seconds = 5.0
    """First wait before retrying a device that did not answer; doubles (with jitter) up to ``backoff_max``."""
    backoff_max: Seconds = 300.0
