"""``kotihub diag``: a support bundle from which personal data is redacted.

Support diagnoses a hub remotely from this bundle without seeing the household: it holds versions, the config with
secrets and addresses removed, status and driver health, store and uplink figures, and recent log lines — but no
names, no readings, no addresses, and MACs and device ids only as keyed hashes (stable within one hub, so support
can still follow "device 3f2a…" across log lines, but meaningless elsewhere).

Redaction is applied to every string of the bundle at the end, whatever part produced it: known personal strings
(device ids, names, rooms, addresses, configured hosts) are replaced first, then anything shaped like a MAC, an IP
address or an e-mail address.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import platform
import re
import sqlite3
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.control_api import Args

if TYPE_CHECKING:
    from gateway.daemon import Daemon

MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b|\b0x[0-9a-fA-F]{16}\b")
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
SAFE_CONFIG_STRINGS = {"log_level", "cipher", "scanning_mode", "kind", "prefix", "prefixes", "formats", "name"}


class RecentLogs(logging.Handler):
    """Keeps the last log lines (INFO and above, which by policy carry no personal data) for the support bundle."""

    def __init__(self, capacity: int = 500) -> None:
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken log record must not break logging
            self.handleError(record)


class Redactor:
    def __init__(self, key: bytes, sensitive: dict[str, str]) -> None:
        self._key = key
        # Longest first, so a device id is replaced before a shorter name inside it.
        self._exact = sorted(((s, label) for s, label in sensitive.items() if len(s) >= 3), key=lambda p: -len(p[0]))

    def tag(self, label: str, value: str) -> str:
        return f"<{label}:{hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:10]}>"

    def text(self, value: str) -> str:
        for secret, label in self._exact:
            if secret in value:
                value = value.replace(secret, self.tag(label, secret))
        value = MAC.sub(lambda m: self.tag("mac", m.group(0).lower()), value)
        value = EMAIL.sub(lambda m: self.tag("email", m.group(0)), value)
        value = IPV4.sub(lambda m: self.tag("ip", m.group(0)), value)
        return IPV6.sub(lambda m: self.tag("ip", m.group(0)), value)

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.walk(v) for v in value]
        return value


def _config_view(raw: Any, path: str = "") -> Any:
    """The config with every free-text value that could be an address, a host or a name replaced."""
    if isinstance(raw, dict):
        return {k: _config_view(v, f"{path}.{k}" if path else k) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return [_config_view(v, path) for v in raw]
    if isinstance(raw, str) and raw and path.rsplit(".", 1)[-1] not in SAFE_CONFIG_STRINGS:
        return "<redacted>"
    return raw


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    for dist in ("kotihub", "cryptography", "SQLAlchemy", "aiomqtt", "bleak", "zeroconf", "pyrage", "python-miio"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


async def bundle(daemon: Daemon, logs: RecentLogs | None) -> dict[str, Any]:
    assert daemon.hub is not None and daemon.store is not None
    sensitive: dict[str, str] = {}
    for device_id, state in daemon.hub.devices.items():
        sensitive[device_id] = "device"
        native = device_id.split(":", 1)[-1]
        sensitive[native] = "device"
        for label, value in (("name", state.info.name), ("room", state.info.room), ("addr", state.info.address)):
            if value:
                sensitive[value] = label
    for table in daemon.config.drivers.values():
        for key in ("host", "address", "stream_url", "username"):
            if isinstance(table, dict) and isinstance(table.get(key), str) and table[key]:
                sensitive[table[key]] = key
    # Encoded here, where it leaves the process: the redactor walks plain values, and Structs (driver health)
    # would pass through it unread.
    status: dict[str, Any] = msgspec.to_builtins(await daemon.control.status(Args()))
    status.pop("devices_list", None)
    raw = {
        "created": time.time(),
        "versions": _versions(),
        "config": _config_view(msgspec.to_builtins(daemon.config)),
        "status": status,
        "devices": [
            {
                "device": d.info.device_id,
                "driver": d.info.driver,
                "kind": d.info.kind.value,
                "model": d.info.model,
                "online": d.online,
                "battery": d.battery,
                "last_seen_age_s": round(time.time() - d.last_seen),
            }
            for d in daemon.hub.devices.values()
        ],
        "dead_letters": [
            {k: v for k, v in row.items() if k in ("lane", "seq", "ts", "reason")}
            for row in await daemon.store.dead_letters()
        ],
        "logs": list(logs.lines) if logs is not None else [],
    }
    redactor = Redactor(daemon.store._tag_key, sensitive)
    result: dict[str, Any] = redactor.walk(raw)
    return result
