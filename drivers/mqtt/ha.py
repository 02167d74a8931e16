"""Home Assistant MQTT discovery (protocols.md §2.2): ``<prefix>/<component>/[<node_id>/]<object_id>/config``.

A config message says which state topic (and which key of its JSON, via the value template) carries which
quantity; the decoder remembers that and decodes the state topic when it arrives. An empty payload removes the
entity. Only ``sensor`` (numeric quantities) and ``binary_sensor`` with ``device_class: smoke`` are used.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from drivers.mqtt.common import INVALID, DecoderState, Sink, kind_for, loads, mqtt_id, numeric
from gateway.model import DeviceInfo, EventKind, Quantity, SmokeState

_ID: Final = re.compile(r"[a-zA-Z0-9_-]+")
_Z2M_IDENT: Final = re.compile(r"zigbee2mqtt_(0x[0-9a-fA-F]{16})")
# Templates we can evaluate without Jinja: `{{ value }}`, `{{ value_json.a.b }}`, `{{ value_json["a"][0] }}`,
# optionally followed by harmless filters (`| float`, `| round(1)`, `| int`, `| is_defined`).
_TEMPLATE: Final = re.compile(
    r"\{\{\s*(value_json(?P<path>(?:\.\w+|\[\s*(?:\"[^\"]*\"|'[^']*'|\d+)\s*\])*)|value)"
    r"\s*(?:\|\s*(?:float|int|round|is_defined|default)(?:\([^()]*\))?\s*)*\}\}"
)
_SEGMENT: Final = re.compile(r"\.(\w+)|\[\s*(?:\"([^\"]*)\"|'([^']*)'|(\d+))\s*\]")

MAX_ENTITIES: Final = 5_000
NS: Final = "mqtt.ha"
"""Persisted namespace: key = config topic (after the prefix), value = the config payload as received."""

# Abbreviations HA accepts in discovery payloads, for the keys this decoder reads.
_ABBREVIATIONS: Final = {
    "stat_t": "state_topic",
    "val_tpl": "value_template",
    "unit_of_meas": "unit_of_measurement",
    "dev_cla": "device_class",
    "uniq_id": "unique_id",
    "dev": "device",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
}
_DEVICE_ABBREVIATIONS: Final = {"ids": "identifiers", "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id"}

_CLASSES: Final[dict[str, Quantity]] = {
    "temperature": Quantity.TEMPERATURE,
    "humidity": Quantity.HUMIDITY,
    "pressure": Quantity.PRESSURE,
    "atmospheric_pressure": Quantity.PRESSURE,
    "illuminance": Quantity.ILLUMINANCE,
    "battery": Quantity.BATTERY,
    "voltage": Quantity.VOLTAGE,
    "carbon_dioxide": Quantity.CO2,
    "pm25": Quantity.PM25,
    "signal_strength": Quantity.RSSI,
}

# (quantity, unit) -> (scale, offset) to the model's unit. A missing unit means the model's own.
_UNITS: Final[dict[tuple[Quantity, str], tuple[float, float]]] = {
    (Quantity.TEMPERATURE, "°C"): (1.0, 0.0),
    (Quantity.TEMPERATURE, "C"): (1.0, 0.0),
    (Quantity.TEMPERATURE, "°F"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    (Quantity.TEMPERATURE, "F"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    (Quantity.TEMPERATURE, "K"): (1.0, -273.15),
    (Quantity.HUMIDITY, "%"): (1.0, 0.0),
    (Quantity.PRESSURE, "hPa"): (1.0, 0.0),
    (Quantity.PRESSURE, "mbar"): (1.0, 0.0),
    (Quantity.PRESSURE, "Pa"): (0.01, 0.0),
    (Quantity.PRESSURE, "kPa"): (10.0, 0.0),
    (Quantity.PRESSURE, "mmHg"): (1.333_223_874_15, 0.0),
    (Quantity.PRESSURE, "inHg"): (33.863_886_666_7, 0.0),
    (Quantity.ILLUMINANCE, "lx"): (1.0, 0.0),
    (Quantity.ILLUMINANCE, "lux"): (1.0, 0.0),
    (Quantity.BATTERY, "%"): (1.0, 0.0),
    (Quantity.VOLTAGE, "V"): (1.0, 0.0),
    (Quantity.VOLTAGE, "mV"): (0.001, 0.0),
    (Quantity.CO2, "ppm"): (1.0, 0.0),
    (Quantity.PM25, "µg/m³"): (1.0, 0.0),
    (Quantity.RSSI, "dBm"): (1.0, 0.0),
}


class Entity(msgspec.Struct, frozen=True):
    """One discovered entity: where its value lives and what it means."""

    config_topic: str
    state_topic: str
    info: DeviceInfo
    quantity: Quantity | None
    """None for a smoke binary sensor."""
    path: tuple[str | int, ...] | None
    """Where the value is in the state JSON; None: the whole payload is the value."""
    scale: float = 1.0
    offset: float = 0.0
    payload_on: Any = "ON"
    payload_off: Any = "OFF"


def _expand(obj: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    return {table.get(k, k): v for k, v in obj.items()}


def _template_path(template: Any) -> tuple[str | int, ...] | str | None:
    """The JSON path a value template reads, None for the raw value, or an error string."""
    if template is None:
        return None
    if type(template) is not str:
        return "value_template is not a string"
    match = _TEMPLATE.fullmatch(template.strip())
    if match is None:
        return "unsupported value_template"
    if match.group(1) == "value":
        return None
    path: list[str | int] = []
    for seg in _SEGMENT.finditer(match.group("path") or ""):
        attr, dq, sq, idx = seg.groups()
        if idx is not None:
            path.append(int(idx))
        else:
            path.append(attr if attr is not None else (dq if dq is not None else sq))
    return tuple(path)


def _topic(value: Any, base: Any) -> str | None:
    if type(value) is not str:
        return None
    if type(base) is str:
        if value.startswith("~"):
            value = base + value[1:]
        elif value.endswith("~"):
            value = value[:-1] + base
    if not value or len(value) > 1024 or "+" in value or "#" in value or "\x00" in value:
        return None
    return str(value)


def _device_info(cfg: dict[str, Any], is_smoke: bool) -> DeviceInfo | None:
    device = cfg.get("device")
    device = _expand(device, _DEVICE_ABBREVIATIONS) if type(device) is dict else {}
    idents = device.get("identifiers")
    ident = idents[0] if type(idents) is list and idents else idents
    if type(ident) is not str or not ident:
        ident = cfg.get("unique_id")
        if type(ident) is not str or not ident:
            return None
    z2m = _Z2M_IDENT.fullmatch(ident)
    dev = mqtt_id(z2m.group(1)) if z2m else mqtt_id(f"ha:{ident}")
    name, manufacturer = device.get("name"), device.get("manufacturer")
    model = device.get("model_id") or device.get("model")
    return DeviceInfo(
        device_id=dev,
        driver="mqtt",
        kind=kind_for(is_smoke),
        name=name if type(name) is str else "",
        manufacturer=manufacturer if type(manufacturer) is str else "",
        model=model if type(model) is str else "",
        address=ident,
    )


def decode_config(
    rest: str, payload: bytes, state: DecoderState, sink: Sink, *, skip_prefixes: tuple[str, ...]
) -> None:
    """``rest`` is the topic after ``<discovery prefix>/``. ``skip_prefixes``: state topics another enabled
    family decodes natively (Zigbee2MQTT announces its devices here too); those entities are not mapped twice."""
    parts = rest.split("/")
    if len(parts) not in (3, 4) or parts[-1] != "config" or not all(_ID.fullmatch(p) for p in parts[:-1]):
        return  # e.g. homeassistant/status, HA's birth message
    config_topic = rest
    had = _remove(config_topic, state)
    _decode_config(config_topic, parts[0], payload, state, sink, skip_prefixes)
    if config_topic in state.ha_by_config_topic:
        if state.ha_saved.get(config_topic) != payload:  # retained configs come again on every connect
            state.ha_saved[config_topic] = bytes(payload)
            sink.persist.append((NS, config_topic, bytes(payload)))
    elif had:  # removed (an empty retained payload) or replaced by a config we do not use
        state.ha_saved.pop(config_topic, None)
        sink.persist.append((NS, config_topic, None))


def _decode_config(
    rest: str, component: str, payload: bytes, state: DecoderState, sink: Sink, skip_prefixes: tuple[str, ...]
) -> None:
    config_topic = rest
    if not payload.strip():
        return
    if component not in ("sensor", "binary_sensor"):
        return
    cfg = loads(payload)
    if type(cfg) is not dict:
        sink.reject("discovery config is not a JSON object", rest)
        return
    cfg = _expand(cfg, _ABBREVIATIONS)
    device_class = cfg.get("device_class")
    is_smoke = component == "binary_sensor" and device_class == "smoke"
    quantity = _CLASSES.get(device_class) if component == "sensor" and type(device_class) is str else None
    if not is_smoke and quantity is None:
        return  # an entity the hub has no quantity for (power, energy, switches...)
    state_topic = _topic(cfg.get("state_topic"), cfg.get("~"))
    if state_topic is None:
        sink.reject("discovery config has no usable state_topic", rest)
        return
    if any(state_topic.startswith(p) for p in skip_prefixes):
        return
    path = _template_path(cfg.get("value_template"))
    if isinstance(path, str):
        sink.reject(path, rest)
        return
    scale, offset = 1.0, 0.0
    if quantity is not None:
        unit = cfg.get("unit_of_measurement")
        if unit is not None:
            conversion = _UNITS.get((quantity, unit)) if type(unit) is str else None
            if conversion is None:
                sink.reject("discovery config has an unsupported unit", rest)
                return
            scale, offset = conversion
    info = _device_info(cfg, is_smoke)
    if info is None:
        sink.reject("discovery config has no device identifier or unique_id", rest)
        return
    if len(state.ha_by_config_topic) >= MAX_ENTITIES:
        sink.reject("too many discovered entities", rest)
        return
    entity = Entity(
        config_topic=config_topic,
        state_topic=state_topic,
        info=info,
        quantity=quantity,
        path=path,
        scale=scale,
        offset=offset,
        payload_on=cfg.get("payload_on", "ON"),
        payload_off=cfg.get("payload_off", "OFF"),
    )
    state.ha_by_config_topic[config_topic] = entity
    entities = state.ha_by_state_topic.setdefault(state_topic, [])
    if not entities:
        sink.subscribe.append(state_topic)
    entities.append(entity)
    if is_smoke:
        state.smoke_devices.add(info.device_id)
    sink.device(info)


def _remove(config_topic: str, state: DecoderState) -> bool:
    old = state.ha_by_config_topic.pop(config_topic, None)
    if old is None:
        return False
    entities = state.ha_by_state_topic.get(old.state_topic, [])
    entities[:] = [e for e in entities if e.config_topic != config_topic]
    if not entities:
        state.ha_by_state_topic.pop(old.state_topic, None)
    return True


def _lookup(obj: Any, path: tuple[str | int, ...]) -> Any:
    for seg in path:
        if isinstance(seg, int):
            if type(obj) is not list or seg >= len(obj):
                return None
            obj = obj[seg]
        elif type(obj) is dict:
            obj = obj.get(seg)
        else:
            return None
    return obj


def decode_state(entities: list[Entity], payload: bytes, sink: Sink) -> None:
    obj: Any = INVALID
    raw: str | None = None
    for entity in entities:
        if entity.path is None:
            if raw is None:
                try:
                    raw = payload.decode("utf-8").strip()
                except UnicodeDecodeError:
                    sink.reject("state payload is not UTF-8", entity.state_topic)
                    return
            value: Any = raw
        else:
            if obj is INVALID:
                obj = loads(payload)
                if obj is INVALID:
                    sink.reject("state payload is not JSON", entity.state_topic)
                    return
            value = _lookup(obj, entity.path)
            if value is None:
                continue  # this message does not carry the entity's key
        dev = entity.info.device_id
        sink.device(entity.info)
        if entity.quantity is None:
            smoke = _binary(value, entity)
            if smoke is None:
                sink.reject("smoke state matches neither payload_on nor payload_off", entity.state_topic)
            else:
                sink.state(dev, EventKind.SMOKE, smoke.value)
            continue
        number = numeric(value)
        if number is None:
            if value in ("unknown", "unavailable", "None", ""):
                continue
            sink.reject("sensor state is not a number", entity.state_topic)
            continue
        value = (
            number if entity.scale == 1.0 and entity.offset == 0.0 else round(number * entity.scale + entity.offset, 4)
        )
        sink.reading(dev, entity.quantity, value)


def _binary(value: Any, entity: Entity) -> SmokeState | None:
    if value == entity.payload_on and type(value) is type(entity.payload_on):
        return SmokeState.SMOKE
    if value == entity.payload_off and type(value) is type(entity.payload_off):
        return SmokeState.CLEAR
    # A raw payload is text: compare with the JSON form of a boolean/number payload_on (`true`, `1`).
    if type(value) is str:
        if value == msgspec.json.encode(entity.payload_on).decode():
            return SmokeState.SMOKE
        if value == msgspec.json.encode(entity.payload_off).decode():
            return SmokeState.CLEAR
    return None
