"""The MQTT driver's reconnect backoff is the hub's one retry policy (:mod:`gateway.backoff`)."""

from gateway.backoff import Backoff

__all__ = ["Backoff"]
