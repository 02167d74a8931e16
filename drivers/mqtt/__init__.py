"""MQTT driver: Zigbee2MQTT, Home Assistant discovery, Tasmota and Shelly Gen2/Gen3 devices via a broker.

Pure decoders (:mod:`drivers.mqtt.decoders` and the per-family modules) are apart from the I/O
(:mod:`drivers.mqtt.driver`); :mod:`drivers.mqtt.simulator` and :mod:`drivers.mqtt.broker` serve tests and the demo.
"""
