"""The hub's configuration: loaded once from TOML into typed, validated objects.

An unknown key, a wrong type or an impossible value is refused with the key's dotted path and the reason, all
problems at once. Secrets never live here: keys, tokens and passwords come from credentials (see ``gateway.secrets``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gateway.errors import ConfigError

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
LongSeconds = Annotated[float, msgspec.Meta(gt=0, le=30 * 86_400)]


class HubSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "kotihub"
    state_dir: str = "/var/lib/kotihub"
    runtime_dir: str = "/run/kotihub"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StoreSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    commit_interval: Annotated[float, msgspec.Meta(ge=0.001, le=60)] = 1.0
    commit_max_items: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5_000
    max_pending_readings: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 200_000
    journal_size_limit: Annotated[int, msgspec.Meta(ge=0)] = 4 * 1024 * 1024
    min_free_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024


class CryptoSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cipher: Literal["auto", "aes-256-gcm", "chacha20-poly1305"] = "auto"


class RetentionSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 183
    interval: Seconds = 3600.0
    batch_rows: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500


class UplinkSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = False
    register_url: str = ""
    batch_items: Annotated[int, msgspec.Meta(ge=1, le=20_000)] = 5_000
    batch_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 30.0
    backoff_initial: Seconds = 0.5
    backoff_max: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0
    clip_bandwidth_bytes_per_s: Annotated[int, msgspec.Meta(ge=0)] = 0
    command_poll_wait: Annotated[float, msgspec.Meta(ge=0, le=60)] = 25.0
    heartbeat_interval: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    """Seconds between health heartbeats to the register (disk, write volume, drivers, lanes)."""

    def __post_init__(self) -> None:
        if self.enabled and not re.match(r"^https://[^\s/]+", self.register_url):
            raise ValueError("register_url must be an https:// URL when the uplink is enabled")


class ControlSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    socket: str = ""
    """Path of the control socket; empty means ``<runtime_dir>/control.sock``."""
    group: str = ""
    """Group that may use the socket (mode 0660); empty keeps the daemon's own group."""


class DeviceSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    offline_after: dict[str, LongSeconds] = msgspec.field(
        default_factory=lambda: {
            "sensor": 90_000.0,
            "smoke_detector": 90_000.0,
            "camera": 300.0,
            "gateway": 600.0,
            "other": 90_000.0,
        }
    )


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    hub: HubSection = msgspec.field(default_factory=HubSection)
    store: StoreSection = msgspec.field(default_factory=StoreSection)
    crypto: CryptoSection = msgspec.field(default_factory=CryptoSection)
    retention: RetentionSection = msgspec.field(default_factory=RetentionSection)
    uplink: UplinkSection = msgspec.field(default_factory=UplinkSection)
    control: ControlSection = msgspec.field(default_factory=ControlSection)
    devices: DeviceSection = msgspec.field(default_factory=DeviceSection)
    drivers: dict[str, Any] = msgspec.field(default_factory=dict)
    """Raw ``[drivers.NAME]`` tables; validated by each driver's own ``Config`` in :func:`driver_configs`."""

    @property
    def state_path(self) -> Path:
        return Path(self.hub.state_dir)

    @property
    def socket_path(self) -> Path:
        return Path(self.control.socket or Path(self.hub.runtime_dir) / "control.sock")


_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")
_SECRET_WORDS = ("password", "token", "secret", "bindkey", "bind_key", "private_key", "passphrase")


def _problem(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """Turns msgspec's message into (dotted key path, reason)."""
    message = str(exc)
    path = ""
    match = _PATH_RE.search(message)
    if match:
        path = re.sub(r"\[(\d+)\]", r"[\1]", match.group("path"))
        message = message[: match.start()]
    unknown = _UNKNOWN_RE.match(message)
    if unknown:
        path = f"{path}.{unknown.group('field')}" if path else unknown.group("field")
        message = "unknown key"
    full = ".".join(p for p in (prefix, path) if p)
    return full or "(top level)", message


def _secret_keys(table: Any, prefix: str = "") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if isinstance(table, dict):
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if any(word in str(key).lower() for word in _SECRET_WORDS):
                problems.append((path, "secrets do not belong in the config file; put them in credentials"))
            problems.extend(_secret_keys(value, path))
    return problems


def parse(raw: dict[str, Any]) -> Config:
    """Validates a parsed TOML document; raises :class:`ConfigError` listing every problem found."""
    problems = _secret_keys(raw)
    drivers_raw = raw.get("drivers", {})
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        problems.append(_problem(exc, ""))
        config = None
    if isinstance(drivers_raw, dict):
        for name, table in drivers_raw.items():
            problems.extend(_driver_problems(name, table))
    else:
        problems.append(("drivers", "must be a table of [drivers.NAME] tables"))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _driver_problems(name: str, table: Any) -> list[tuple[str, str]]:
    from drivers import REGISTRY, driver_class

    if name not in REGISTRY:
        return [(f"drivers.{name}", f"unknown driver; known drivers are {', '.join(sorted(REGISTRY))}")]
    if not isinstance(table, dict):
        return [(f"drivers.{name}", "must be a table")]
    options = {k: v for k, v in table.items() if k != "enabled"}
    if not isinstance(table.get("enabled", True), bool):
        return [(f"drivers.{name}.enabled", "expected a boolean")]
    try:
        msgspec.convert(options, driver_class(name).Config)
    except msgspec.ValidationError as exc:
        return [_problem(exc, f"drivers.{name}")]
    except ImportError as exc:
        return [(f"drivers.{name}", f"driver cannot load: {exc}")]
    return []


def driver_configs(config: Config) -> dict[str, msgspec.Struct]:
    """The enabled drivers' typed configs, by name (``enabled = false`` or absent tables are left out)."""
    from drivers import driver_class

    out: dict[str, msgspec.Struct] = {}
    for name, table in config.drivers.items():
        if table.get("enabled", True):
            options = {k: v for k, v in table.items() if k != "enabled"}
            out[name] = msgspec.convert(options, driver_class(name).Config)
    return out


def load(path: Path | str | None) -> Config:
    """Loads and validates the config file; ``None`` gives the embedded defaults."""
    if path is None:
        return parse({})
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([(str(path), "file not found")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from exc
    return parse(raw)
