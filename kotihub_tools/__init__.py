"""Tools that run kotihub's parts together outside a real home: ``kotihub demo``, the protocol simulators (camera,
MQTT devices, miio gateway, recorded BLE advertisements) and a private mosquitto. Tests and benchmarks use them too.

Nothing in the hub's package (``gateway``) or the drivers imports them; the one entry is ``kotihub demo``, which
loads :mod:`kotihub_tools.demo` only when it runs (tests/unit/test_layers.py).
"""
