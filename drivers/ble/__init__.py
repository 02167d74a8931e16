"""Bluetooth LE sensors: pure decoders per advertisement format, the bleak-based driver, and a replay source.

Decoders (``bthome``, ``atc``, ``mibeacon``, ``ruuvi``) take the address and bleak's service/manufacturer data dicts
and return model values or a reason; they never raise. ``driver.BleDriver`` owns scanning; ``replay`` feeds recorded
real advertisements through the same callback for the demo and the tests.
"""
