"""Tasmota telemetry (protocols.md §2.3): ``tele/<topic>/SENSOR`` JSON and ``tele/<topic>/LWT`` text.

A SENSOR message may carry several sensors, each under its own key (``AM2301``, ``BME280``, ``DS18B20-1``), so
each sensor is its own device (``mqtt:tasmota:<topic>:<sensor>``) reached via the Tasmota node
(``mqtt:tasmota:<topic>``). ``TempUnit`` and ``PressureUnit`` are top-level and apply to all sensors.
"""

from __future__ import annotations

from typing import Final

from drivers.mqtt.common import DecoderState, Sink, loads, mqtt_id, number, text
from gateway.model import DeviceInfo, DeviceKind, EventKind, Quantity

_FIELDS: Final[dict[str, Quantity]] = {
    "Temperature": Quantity.TEMPERATURE,
    "Humidity": Quantity.HUMIDITY,
    "Pressure": Quantity.PRESSURE,
    "Illuminance": Quantity.ILLUMINANCE,
    "CarbonDioxide": Quantity.CO2,
    "eCO2": Quantity.CO2,
    "PM2.5": Quantity.PM25,
}
# Pressure units Tasmota can send (SetOption24 switches hPa to mmHg), to hPa.
_PRESSURE: Final[dict[str, float]] = {"hPa": 1.0, "mbar": 1.0, "mmHg": 1.333_223_874_15, "inHg": 33.863_886_666_7}
# Top-level keys that are not sensors: energy metering and Zigbee bridge traffic are out of scope.
_NOT_SENSORS: Final = frozenset({"ENERGY", "ZbReceived", "IRReceived", "RfReceived"})


def node_id(topic: str) -> str:
    return mqtt_id(f"tasmota:{topic}")


def _node(topic: str) -> DeviceInfo:
    return DeviceInfo(device_id=node_id(topic), driver="mqtt", kind=DeviceKind.OTHER, model="Tasmota", address=topic)


def decode(tasmota_topic: str, kind: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    """``kind`` is the last topic level: SENSOR or LWT; anything else (STATE, RESULT, INFOn) carries no data."""
    if not tasmota_topic:
        return
    if kind == "LWT":
        lwt = text(payload)
        if lwt not in ("Online", "Offline"):
            sink.reject("tasmota LWT is not Online/Offline", tasmota_topic)
            return
        sink.device(_node(tasmota_topic))
        sink.state(node_id(tasmota_topic), EventKind.AVAILABILITY, "online" if lwt == "Online" else "offline")
        return
    if kind != "SENSOR":
        return
    obj = loads(payload)
    if type(obj) is not dict:
        sink.reject("tasmota SENSOR is not a JSON object", tasmota_topic)
        return
    fahrenheit = obj.get("TempUnit") == "F"
    pressure_unit = obj.get("PressureUnit", "hPa")
    pressure_factor = _PRESSURE.get(pressure_unit) if type(pressure_unit) is str else None
    node = node_id(tasmota_topic)
    node_seen = False
    for sensor, fields in obj.items():
        if type(fields) is not dict or sensor in _NOT_SENSORS:
            continue
        dev = mqtt_id(f"tasmota:{tasmota_topic}:{sensor}")
        info: DeviceInfo | None = None
        for field, quantity in _FIELDS.items():
            raw = fields.get(field)
            if raw is None:
                continue
            value = number(raw)
            if value is None:
                sink.reject(f"tasmota {field} is not a number", tasmota_topic)
                continue
            if quantity is Quantity.TEMPERATURE and fahrenheit:
                value = round((value - 32.0) * 5.0 / 9.0, 4)
            elif quantity is Quantity.PRESSURE:
                if pressure_factor is None:
                    sink.reject("tasmota PressureUnit is unknown", tasmota_topic)
                    continue
                value = value if pressure_factor == 1.0 else round(value * pressure_factor, 4)
            if info is None:
                if not node_seen:
                    sink.device(_node(tasmota_topic))
                    node_seen = True
                info = DeviceInfo(
                    device_id=dev, driver="mqtt", kind=DeviceKind.SENSOR, model=sensor, address=tasmota_topic, via=node
                )
                sink.device(info)
            sink.reading(dev, quantity, value)
