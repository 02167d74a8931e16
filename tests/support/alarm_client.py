"""The hub's alarm-lane client (cloud_sync.uplink.alarmroute.AlarmClient) on its own, for tests and benchmarks that
drive it directly instead of through an uplink."""

from __future__ import annotations

from pathlib import Path

from cloud_sync.uplink.alarmroute import AlarmClient, AlarmRoute
from cloud_sync.uplink.client import HubIdentity, RegisterClient


def alarm_client(url: str, state_dir: Path) -> AlarmClient:
    """An alarm client towards the register at ``url``, with the identity ``kotihub provision`` wrote in ``state_dir``
    (5 s to connect and 30 s to read unless the client asks for less, as the uplink's defaults)."""
    identity = HubIdentity(state_dir)

    def make(u: str, *, connect_timeout: float | None = None, read_timeout: float | None = None) -> RegisterClient:
        return RegisterClient(u, identity, connect_timeout=connect_timeout or 5.0, read_timeout=read_timeout or 30.0)

    return AlarmClient(AlarmRoute(url), make)
