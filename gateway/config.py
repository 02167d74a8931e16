"""The hub's configuration: loaded once from TOML into typed, validated objects.

An unknown key, a wrong type or an impossible value is refused with the key's dotted path and the reason, all
problems at once. Secrets never live here: keys, tokens and passwords come from credentials (see ``gateway.secrets``).
"""

from __future__ import annotations

import enum
import logging
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from gateway.backoff import BackoffPolicy
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

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


class UplinkSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = False
    register_url: str = ""
    batch_items: Annotated[int, msgspec.Meta(ge=1, le=20_000)] = 5_000
    batch_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    batch_items_max: Annotated[int, msgspec.Meta(ge=1, le=20_000)] = 20_000
    """The most items a bulk lane's batch grows to, doubling after each full batch the register acknowledged within a
    quarter of ``read_timeout`` (a hub catching up; ``batch_bytes`` grows in proportion); back to ``batch_items`` at
    a failed attempt (cloud_sync.uplink.batchsize). Equal to ``batch_items``: batches never grow."""
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 30.0
    backoff_initial: Seconds = 0.5
    backoff_max: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0
    clip_bandwidth_bytes_per_s: Annotated[int, msgspec.Meta(ge=0)] = 0
    command_poll_wait: Annotated[float, msgspec.Meta(ge=0, le=60)] = 55.0
    """Seconds the register may hold a command long-poll open; no longer than the register accepts (it says: 55 s
    today, 30 s for registers before that). Commands wake it at once either way; an idle hub costs the register one
    answered long-poll per this many seconds."""
    heartbeat_interval: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    """Seconds between health heartbeats to the register (disk, write volume, drivers, lanes)."""
    readings_linger_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 20.0
    """Seconds new readings and diagnostics wait for more to join their batch (unless a full batch is there first);
    0 sends each store commit's at once. Alarms and events never wait (cloud_sync.uplink.lanes). 20 s: a home's
    readings in about 3 requests a minute, each on the bulk connection the register still holds (it keeps an idle
    one 35 s), so no send pays a TLS handshake (docs/scale.md, "The readings linger")."""
    readings_live_linger_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 2.0
    """The linger instead while a member has the household's app open (the register says so on the command
    long-poll, cloud_sync.register.watching): readings on Home and the charts are then seconds old, not 20."""
    alarm_keepalive_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 120.0
    """Seconds between pings on the alarm lane's idle connection, so a smoke alarm finds it open (no TCP connect and
    TLS handshake first; cloud_sync.uplink.alarmroute). Never longer than the register says it keeps the connection;
    0 = no pings (the register closes the idle connection, and an alarm opens a new one)."""

    def __post_init__(self) -> None:
        if self.enabled and not re.match(r"^https://[^\s/]+", self.register_url):
            raise ValueError("register_url must be an https:// URL when the uplink is enabled")
        if self.batch_items_max < self.batch_items:
            raise ValueError(f"batch_items_max ({self.batch_items_max}) is less than batch_items ({self.batch_items})")


class SupervisionSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    backoff: BackoffPolicy = msgspec.field(default_factory=BackoffPolicy)
    """How supervised tasks (drivers, the control socket, retention, the uplink's loops) are restarted."""
    writer_stall: Seconds = 30.0
    """A store writer that neither committed nor idled for this long is stuck: the systemd watchdog goes unfed."""


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
    supervision: SupervisionSection = msgspec.field(default_factory=SupervisionSection)
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

OBSOLETE_KEYS = {
    ("retention", "batch_rows"): "no longer used (retention deletes in time-boxed slices); remove this key",
}
"""Keys older releases shipped in ``config/kotihub.toml``: accepted, ignored and reported by ``config check`` so an
upgrade does not stop a hub whose edited config still carries them."""


def _problem(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """Turns msgspec's message into (dotted key path, reason)."""
    message = str(exc)
    path = ""
    match = _PATH_RE.search(message)
    if match:
        path = match.group("path")
        message = message[: match.start()]
    unknown = _UNKNOWN_RE.match(message)
    if unknown:
        path = f"{path}.{unknown.group('field')}" if path else unknown.group("field")
        message = "unknown key"
    return _join(prefix, path) or "(top level)", message


def _join(prefix: str, key: str) -> str:
    if not key or key.startswith("["):
        return prefix + key
    return f"{prefix}.{key}" if prefix else key


def _allowed(typ: Any) -> list[str]:
    """The values an enum-like type accepts, for the error message (empty when it is not one)."""
    while get_origin(typ) is Annotated:
        typ = get_args(typ)[0]
    if get_origin(typ) is Literal:
        return [str(v) for v in get_args(typ)]
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        return [str(m.value) for m in typ]
    return []


def problems_of(value: Any, typ: Any, prefix: str) -> list[tuple[str, str]]:
    """Every problem of ``value`` as a ``typ``, one per key: msgspec stops at the first, so a table that fails is
    checked again key by key (a table whose keys are each fine fails on a rule across keys, reported as is)."""
    try:
        msgspec.convert(value, typ)
    except msgspec.ValidationError as exc:
        first = _problem(exc, prefix)
    else:
        return []
    base = typ
    while get_origin(base) is Annotated:
        base = get_args(base)[0]
    found: list[tuple[str, str]] = []
    if isinstance(base, type) and issubclass(base, msgspec.Struct) and isinstance(value, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(base)}
        for key, item in value.items():
            if key in fields:
                found += problems_of(item, fields[key].type, _join(prefix, str(key)))
            else:
                found.append((_join(prefix, str(key)), "unknown key; known keys are " + ", ".join(fields)))
        missing = [k for k, f in fields.items() if f.required and k not in value]
        found += [(_join(prefix, k), "required key missing") for k in missing]
    elif get_origin(base) in (list, tuple, set, frozenset) and isinstance(value, list) and get_args(base):
        item_type = get_args(base)[0]  # list[X], set[X] and tuple[X, ...] alike
        for i, item in enumerate(value):
            found += problems_of(item, item_type, f"{prefix}[{i}]")
    elif get_origin(base) is dict and isinstance(value, dict):
        for key, item in value.items():
            found += problems_of(item, get_args(base)[1], _join(prefix, str(key)))
    if found:
        return found
    allowed = _allowed(base)
    if allowed:
        return [(first[0], f"{first[1]}; allowed values: {', '.join(allowed)}")]
    return [first]


def _secret_keys(table: Any, prefix: str = "") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if isinstance(table, dict):
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            # Only text can be a secret: `bindkey_refresh_s = 300.0` names a bind key but holds a number.
            if isinstance(value, str) and any(word in str(key).lower() for word in _SECRET_WORDS):
                problems.append((path, "secrets do not belong in the config file; put them in credentials"))
            problems.extend(_secret_keys(value, path))
    return problems


def obsolete_keys(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The obsolete keys present in a parsed document, as (dotted key, what to do)."""
    return [
        (f"{section}.{key}", advice)
        for (section, key), advice in OBSOLETE_KEYS.items()
        if isinstance(raw.get(section), dict) and key in raw[section]
    ]


def parse(raw: dict[str, Any]) -> Config:
    """Validates a parsed TOML document; raises :class:`ConfigError` listing every problem found."""
    raw = {k: ({**v} if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, key in OBSOLETE_KEYS:
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
    problems = _secret_keys(raw)
    drivers_raw = raw.get("drivers", {})
    problems += problems_of(raw, Config, "")
    if isinstance(drivers_raw, dict):
        for name, table in drivers_raw.items():
            problems.extend(_driver_problems(name, table))
    # A secret under a driver's table is also an unknown key there: one report per key is enough.
    reported: set[str] = set()
    unique: list[tuple[str, str]] = []
    for key, reason in problems:
        if key not in reported:
            reported.add(key)
            unique.append((key, reason))
    if unique:
        raise ConfigError(unique)
    return msgspec.convert(raw, Config)


def _driver_problems(name: str, table: Any) -> list[tuple[str, str]]:
    from drivers import REGISTRY, driver_class

    if name not in REGISTRY:
        return [(f"drivers.{name}", f"unknown driver; known drivers are {', '.join(sorted(REGISTRY))}")]
    if not isinstance(table, dict):
        return [(f"drivers.{name}", "must be a table")]
    options = {k: v for k, v in table.items() if k != "enabled"}
    problems: list[tuple[str, str]] = []
    if not isinstance(table.get("enabled", True), bool):
        problems.append((f"drivers.{name}.enabled", "expected a boolean"))
    try:
        config_type = driver_class(name).Config
    except ImportError as exc:
        return [*problems, (f"drivers.{name}", f"driver cannot load: {exc}")]
    return problems + problems_of(options, config_type, f"drivers.{name}")


def driver_configs(config: Config) -> dict[str, msgspec.Struct]:
    """The enabled drivers' typed configs, by name (``enabled = false`` or absent tables are left out)."""
    from drivers import driver_class

    out: dict[str, msgspec.Struct] = {}
    for name, table in config.drivers.items():
        if table.get("enabled", True):
            options = {k: v for k, v in table.items() if k != "enabled"}
            out[name] = msgspec.convert(options, driver_class(name).Config)
    return out


def read(path: Path | str) -> dict[str, Any]:
    """The file's TOML document; anything that keeps it from being read becomes a :class:`ConfigError` naming the
    file (a directory, no permission, not UTF-8, not TOML), never a traceback."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([(str(path), "file not found")]) from exc
    except IsADirectoryError as exc:
        raise ConfigError([(str(path), "is a directory; give the configuration file")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})")]) from exc
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot be read: {exc.strerror or exc}")]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from exc


def load(path: Path | str | None) -> Config:
    """Loads and validates the config file; ``None`` gives the embedded defaults."""
    if path is None:
        return parse({})
    raw = read(path)
    for key, advice in obsolete_keys(raw):
        log.warning("%s: %s: %s", path, key, advice)
    return parse(raw)
