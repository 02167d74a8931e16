"""Shelly Gen2/Gen3 over MQTT (protocols.md §2.4).

``<prefix>/status/<component:id>`` carries a component's whole status, ``<prefix>/events/rpc`` JSON-RPC
notifications (NotifyStatus: changed keys only; NotifyFullStatus; NotifyEvent), ``<prefix>/online`` the LWT
``true``/``false``. The topic prefix defaults to the device id (``shellyhtg3-<mac>``), and the device id is
``mqtt:shelly:<prefix>``; a component with an id other than 0 (add-on probes) is a sub-device of it.

The smoke component's status is ``{"id":0,"alarm":bool,"mute":bool}`` (Shelly API docs, gen2 Components: Smoke);
its events are ``alarm``, ``alarm_off`` and ``alarm_test`` (the docs name them as webhook events
``smoke.alarm``...; that NotifyEvent uses the same names is our inference).
"""

from __future__ import annotations

import re
from typing import Any, Final

from drivers.mqtt.common import DecoderState, Sink, kind_for, loads, mqtt_id, number, text
from gateway.model import DeviceInfo, EventKind, Quantity, SmokeState

_SHELLY_ID: Final = re.compile(r"(shelly[a-z0-9]+)-([0-9a-f]{12})")
_SMOKE_EVENTS: Final = {"alarm": SmokeState.SMOKE, "alarm_off": SmokeState.CLEAR, "alarm_test": SmokeState.TEST}


def device_for(prefix: str) -> str:
    return mqtt_id(f"shelly:{prefix}")


def _info(prefix: str, component: str, state: DecoderState) -> DeviceInfo:
    main = device_for(prefix)
    match = _SHELLY_ID.fullmatch(prefix)
    model = match.group(1) if match else ""
    comp_id = component.partition(":")[2]
    dev = main if comp_id in ("", "0") else mqtt_id(f"shelly:{prefix}:{component}")
    is_smoke = dev in state.smoke_devices or "smoke" in model
    return DeviceInfo(
        device_id=dev,
        driver="mqtt",
        kind=kind_for(is_smoke),
        manufacturer="Shelly",
        model=model,
        address=prefix,
        via="" if dev == main else main,
    )


def decode_status(prefix: str, component: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    obj = loads(payload)
    if type(obj) is not dict:
        sink.reject("shelly status is not a JSON object", prefix)
        return
    _component(prefix, component, obj, state, sink)


def _component(prefix: str, component: str, obj: dict[str, Any], state: DecoderState, sink: Sink) -> None:
    ctype = component.partition(":")[0]
    if ctype == "temperature":
        _value(prefix, component, obj.get("tC"), Quantity.TEMPERATURE, state, sink)
    elif ctype == "humidity":
        _value(prefix, component, obj.get("rh"), Quantity.HUMIDITY, state, sink)
    elif ctype == "illuminance":
        _value(prefix, component, obj.get("lux"), Quantity.ILLUMINANCE, state, sink)
    elif ctype == "devicepower":
        battery = obj.get("battery")
        if type(battery) is dict:
            _value(prefix, component, battery.get("percent"), Quantity.BATTERY, state, sink)
            _value(prefix, component, battery.get("V"), Quantity.VOLTAGE, state, sink)
    elif ctype == "smoke":
        alarm = obj.get("alarm")
        if alarm is None:
            return  # a NotifyStatus that changed only `mute`
        if type(alarm) is not bool:
            sink.reject("shelly smoke alarm is not a boolean", prefix)
            return
        info = _info(prefix, component, state)
        state.smoke_devices.add(info.device_id)
        info = _info(prefix, component, state)
        sink.device(info)
        attrs: dict[str, str | float | int | bool] = {}
        if type(obj.get("mute")) is bool:
            attrs["muted"] = obj["mute"]
        sink.state(info.device_id, EventKind.SMOKE, (SmokeState.SMOKE if alarm else SmokeState.CLEAR).value, attrs)
    # Other components (sys, wifi, switch, ...) are not sensor data.


def _value(prefix: str, component: str, raw: Any, quantity: Quantity, state: DecoderState, sink: Sink) -> None:
    if raw is None:
        return
    value = number(raw)
    if value is None:
        sink.reject(f"shelly {quantity.value} is not a number", prefix)
        return
    info = _info(prefix, component, state)
    sink.device(info)
    sink.reading(info.device_id, quantity, value)


def decode_rpc(prefix: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    obj = loads(payload)
    if type(obj) is not dict or type(obj.get("params")) is not dict:
        sink.reject("shelly events/rpc is not a JSON-RPC notification", prefix)
        return
    method, params = obj.get("method"), obj["params"]
    if method in ("NotifyStatus", "NotifyFullStatus"):
        # Only the keys present are decoded, which is what overlaying a partial status would change anyway.
        for key, value in params.items():
            if ":" in key and type(value) is dict:
                _component(prefix, key, value, state, sink)
    elif method == "NotifyEvent":
        events = params.get("events")
        if type(events) is not list:
            sink.reject("shelly NotifyEvent has no events list", prefix)
            return
        for event in events:
            if type(event) is not dict:
                continue
            component, name = event.get("component"), event.get("event")
            if type(component) is str and component.startswith("smoke:") and name in _SMOKE_EVENTS:
                state.smoke_devices.add(_info(prefix, component, state).device_id)
                info = _info(prefix, component, state)
                sink.device(info)
                sink.state(info.device_id, EventKind.SMOKE, _SMOKE_EVENTS[name].value)


def decode_online(prefix: str, payload: bytes, state: DecoderState, sink: Sink) -> None:
    value = text(payload)
    if value not in ("true", "false"):
        sink.reject("shelly online is not true/false", prefix)
        return
    sink.device(_info(prefix, "", state))
    sink.state(device_for(prefix), EventKind.AVAILABILITY, "online" if value == "true" else "offline")
