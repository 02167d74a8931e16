"""Cameras: discovery (mDNS, ONVIF WS-Discovery), a RAM pre-roll ring per camera, and clips sealed with age to the
household's public keys. The driver class is :class:`drivers.camera.driver.CameraDriver`."""
