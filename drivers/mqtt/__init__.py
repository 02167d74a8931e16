"""MQTT driver: Zigbee2MQTT, Home Assistant discovery, Tasmota and Shelly Gen2/Gen3 devices via a broker.

Pure decoders (:mod:`drivers.mqtt.decoders` and the per-family modules) are apart from the I/O
(:mod:`drivers.mqtt.driver`); the simulator and the private broker that tests and the demo use are tools
(:mod:`kotihub_tools.simulators.mqtt`, :mod:`kotihub_tools.broker`).
"""
