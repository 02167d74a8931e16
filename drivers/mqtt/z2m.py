"""Zigbee2MQTT 2.x topics (protocols.md §2.1): device state, ``bridge/devices``, availability, ``bridge/state``.

Device ids are ``mqtt:<ieee address>`` from the ``bridge/devices`` map, so they survive renames. The map is
persisted (:data:`NS`) so that it is there after a restart, before the broker delivers its queued backlog. A state
message for a friendly name not in the map uses the name itself if it is an IEEE address (Z2M's default name);
otherwise it is *held* (the driver keeps it until the next ``bridge/devices``), never filed under an invented id.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from drivers.mqtt.common import INVALID, DecoderState, Sink, kind_for, loads, mqtt_id, number, text
from drivers.mqtt.smoke import smoke_attrs, z2m_smoke_state
from gateway.model import DeviceInfo, DeviceKind, EventKind, Quantity

_IEEE: Final = re.compile(r"0x[0-9a-fA-F]{16}")

# key -> (quantity, factor to the model's unit). Illuminance is handled apart (1.x vs 2.x).
_NUMERIC: Final[dict[str, tuple[Quantity, float]]] = {
    "temperature": (Quantity.TEMPERATURE, 1.0),
    "humidity": (Quantity.HUMIDITY, 1.0),
    "pressure": (Quantity.PRESSURE, 1.0),
    "battery": (Quantity.BATTERY, 1.0),
    "voltage": (Quantity.VOLTAGE, 0.001),  # Z2M reports battery voltage in mV
    "co2": (Quantity.CO2, 1.0),
    "pm25": (Quantity.PM25, 1.0),
}

# Bridge topics that carry nothing for the hub (info, groups, logs, request/response traffic).


def bridge_id(prefix: str) -> str:
    return mqtt_id(f"{prefix}/bridge")


NS: Final = "mqtt.z2m"
"""Persisted namespace: key = topic prefix, value = :class:`SavedMap`."""


class SavedMap(msgspec.Struct, frozen=True, array_like=True):
    names: dict[str, str]
    infos: list[DeviceInfo]
    smoke: list[str]


def restore(blob: bytes, state: DecoderState) -> None:
    """Loads a map persisted by :func:`_bridge_devices` (after a restart)."""
    saved = msgspec.msgpack.decode(blob, type=SavedMap)
    state.z2m_ieee = dict(saved.names)
    state.z2m_info = {info.address: info for info in saved.infos}
    state.smoke_devices |= set(saved.smoke)


def decode(prefix: str, rest: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    """``rest`` is the topic after ``<prefix>/``."""
    if rest.startswith("bridge/"):
        _bridge(prefix, rest[7:], payload, state, sink)
        return
    if rest.endswith("/availability"):
        _availability(prefix, rest[:-13], payload, state, sink)
        return
    if rest.endswith(("/set", "/get")) or "/set/" in rest or "/get/" in rest:
        return  # commands to devices, published by others
    _device_state(prefix, rest, payload, state, sink)


def _resolve(name: str, state: DecoderState) -> tuple[str | None, DeviceInfo | None]:
    """The device id for a friendly name, or None while the name is not in the map."""
    ieee = state.z2m_ieee.get(name)
    if ieee is not None:
        return mqtt_id(ieee), state.z2m_info.get(ieee)
    if _IEEE.fullmatch(name):
        return mqtt_id(name), None
    return None, None


def _device_state(prefix: str, name: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    obj = loads(payload)
    if type(obj) is not dict:
        sink.reject("zigbee2mqtt state is not a JSON object", name)
        return
    dev, info = _resolve(name, state)
    if dev is None:
        sink.hold()
        return
    is_smoke = "smoke" in obj or dev in state.smoke_devices
    if info is None:
        info = DeviceInfo(
            device_id=dev, driver="mqtt", kind=kind_for(is_smoke), name=name, address=name, via=bridge_id(prefix)
        )
    sink.device(info)
    for key, (quantity, factor) in _NUMERIC.items():
        raw = obj.get(key)
        if raw is None:
            continue
        value = number(raw)
        if value is None:
            sink.reject(f"zigbee2mqtt {key} is not a number", name)
            continue
        sink.reading(dev, quantity, round(value * factor, 6) if factor != 1.0 else value)
    # 2.x: `illuminance` is lux. 1.x sent the raw ZCL value there and lux in `illuminance_lux`.
    lux = obj.get("illuminance_lux", obj.get("illuminance"))
    if lux is not None:
        value = number(lux)
        if value is None:
            sink.reject("zigbee2mqtt illuminance is not a number", name)
        else:
            sink.reading(dev, Quantity.ILLUMINANCE, value)
    if is_smoke:
        smoke = z2m_smoke_state(obj)
        if smoke is None:
            sink.reject("zigbee2mqtt smoke flag is not a boolean", name)
        else:
            sink.state(dev, EventKind.SMOKE, smoke.value, smoke_attrs(obj))


def _online(payload: bytes) -> str | None:
    """``{"state":"online"}`` (2.x) or the plain string (1.x) -> "online"/"offline"."""
    obj = loads(payload)
    if type(obj) is dict:
        obj = obj.get("state")
    elif obj is INVALID:
        obj = text(payload)
    if obj in ("online", "offline"):
        return str(obj)
    return None


def _availability(prefix: str, name: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    avail = _online(payload)
    if avail is None:
        sink.reject("zigbee2mqtt availability is not online/offline", name)
        return
    dev, _ = _resolve(name, state)
    if dev is None:
        sink.hold()
        return
    sink.state(dev, EventKind.AVAILABILITY, avail)


def _bridge(prefix: str, sub: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    if sub == "devices":
        _bridge_devices(prefix, payload, state, sink)
    elif sub == "state":
        avail = _online(payload)
        if avail is None:
            sink.reject("zigbee2mqtt bridge/state is not online/offline", "bridge")
            return
        bridge = bridge_id(prefix)
        sink.device(
            DeviceInfo(device_id=bridge, driver="mqtt", kind=DeviceKind.GATEWAY, model="Zigbee2MQTT", address=prefix)
        )
        sink.state(bridge, EventKind.AVAILABILITY, avail)
    # Everything else under bridge/ (info, groups, events, logs, requests, responses) is not device data.


def _has_expose(exposes: Any, name: str) -> bool:
    if type(exposes) is not list:
        return False
    for item in exposes:
        if type(item) is dict:
            if item.get("name") == name or item.get("property") == name:
                return True
            if _has_expose(item.get("features"), name):
                return True
    return False


def _bridge_devices(prefix: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    devices = loads(payload)
    if type(devices) is not list:
        sink.reject("zigbee2mqtt bridge/devices is not a JSON array", "bridge")
        return
    names: dict[str, str] = {}
    infos: dict[str, DeviceInfo] = {}
    smoke: set[str] = set()
    via = bridge_id(prefix)
    for entry in devices:
        if type(entry) is not dict:
            sink.reject("zigbee2mqtt bridge/devices entry is not an object", "bridge")
            continue
        ieee, name = entry.get("ieee_address"), entry.get("friendly_name")
        if type(ieee) is not str or type(name) is not str or not _IEEE.fullmatch(ieee):
            sink.reject("zigbee2mqtt bridge/devices entry lacks ieee_address/friendly_name", "bridge")
            continue
        if entry.get("type") == "Coordinator":
            continue  # the coordinator is the bridge itself
        definition = entry.get("definition")
        if type(definition) is not dict:
            definition = {}
        model, vendor = definition.get("model"), definition.get("vendor")
        if type(model) is not str:
            model = entry.get("model_id") if type(entry.get("model_id")) is str else ""
        if type(vendor) is not str:
            vendor = entry.get("manufacturer") if type(entry.get("manufacturer")) is str else ""
        is_smoke = _has_expose(definition.get("exposes"), "smoke")
        # A Zigbee siren (IAS WD) exposes the composite `warning`; the hub sounds it on smoke (gateway.sirens).
        is_siren = not is_smoke and _has_expose(definition.get("exposes"), "warning")
        ieee = ieee.lower()
        dev = mqtt_id(ieee)
        if is_smoke:
            smoke.add(dev)
        info = DeviceInfo(
            device_id=dev,
            driver="mqtt",
            kind=DeviceKind.SIREN if is_siren else kind_for(is_smoke),
            name=name,
            manufacturer=str(vendor),
            model=str(model),
            address=ieee,
            via=via,
        )
        names[name] = ieee
        infos[ieee] = info
        sink.device(info)
    # Replace, not merge: a renamed device must stop answering to its old name.
    state.z2m_ieee = names
    state.z2m_info = infos
    state.smoke_devices = {d for d in state.smoke_devices if not d.startswith("mqtt:0x")} | smoke
    saved = SavedMap(names=names, infos=list(infos.values()), smoke=sorted(smoke))
    sink.persist.append((NS, prefix, msgspec.msgpack.encode(saved)))
    sink.remapped = True
