"""Device drivers, one sub-package per protocol family, listed explicitly.

The registry names each driver's class by import path so that a driver's dependencies (python-miio, bleak, ...) are
imported only when its ``[drivers.NAME]`` table enables it.
"""

from __future__ import annotations

import importlib

from drivers.base import Driver

REGISTRY: dict[str, str] = {
    "mqtt": "drivers.mqtt.driver:MqttDriver",
    "ble": "drivers.ble.driver:BleDriver",
    "miio": "drivers.miio.driver:MiioDriver",
    "camera": "drivers.camera.driver:CameraDriver",
}


def driver_class(name: str) -> type[Driver]:
    """The driver class registered as ``name``; ``KeyError`` if there is none."""
    module_name, _, attr = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{REGISTRY[name]} is not a Driver")
    return cls
