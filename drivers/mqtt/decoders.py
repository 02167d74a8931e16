"""The MQTT decoder: topic + payload + the hub's clock in, model values out. No I/O, never raises.

:class:`MqttDecoder` routes each message to its family (Zigbee2MQTT, Home Assistant discovery, Tasmota, Shelly),
keeps the small state they need (:class:`~drivers.mqtt.common.DecoderState`) and drops repeats: the same value of
the same device within ``dedupe_window`` seconds is emitted once, and an event (smoke, availability) is emitted
only when its state changes, so a smoke transition always goes out.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec

from drivers.mqtt import ha, shelly, tasmota, z2m
from drivers.mqtt.common import IGNORED, NOTHING, Decoded, DecoderState, Sink

__all__ = ["Decoded", "DecoderState", "Families", "MqttDecoder"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD: Final = 256 * 1024
# bridge/devices lists every device with its full `exposes` definition: megabytes on a big network.
DEVICE_LIST_MAX_PAYLOAD: Final = 16 * 1024 * 1024


class Families(msgspec.Struct, frozen=True, kw_only=True):
    """Which families are decoded and under which topic prefixes; None disables a family.

    ``shelly`` lists Shelly topic prefixes; ``"+"`` means any single-level prefix (the default: a Shelly's
    prefix is its device id, e.g. ``shellyhtg3-b8d61a8b17cc``).
    """

    zigbee2mqtt: str | None = "zigbee2mqtt"
    homeassistant: str | None = "homeassistant"
    tasmota: str | None = "tele"
    shelly: tuple[str, ...] | None = ("+",)


class MqttDecoder:
    """Stateful, I/O-free decoder for one broker connection's messages."""

    def __init__(
        self,
        families: Families | None = None,
        *,
        dedupe_window: float = 5.0,
        seen_interval: float = 60.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.families = families or Families()
        self.state = DecoderState()
        self.dedupe_window = dedupe_window
        self.seen_interval = seen_interval
        self.max_payload = max_payload
        f = self.families
        self._z2m = f"{f.zigbee2mqtt}/" if f.zigbee2mqtt else None
        self._ha = f"{f.homeassistant}/" if f.homeassistant else None
        self._tasmota = f"{f.tasmota}/" if f.tasmota else None
        shelly_prefixes = f.shelly or ()
        self._shelly_any = "+" in shelly_prefixes
        self._shelly_prefixes = frozenset(p for p in shelly_prefixes if p != "+")
        self._shelly_on = bool(shelly_prefixes)
        self._skip_ha = (self._z2m,) if self._z2m else ()

    def subscriptions(self) -> list[str]:
        """The topic filters to subscribe to, in order. Zigbee2MQTT's device list comes first so that the
        broker delivers it (retained) before the retained device states, which then map to IEEE ids at once.
        HA state topics learnt so far follow (after a reconnect they must be subscribed again)."""
        f = self.families
        topics: list[str] = []
        if f.zigbee2mqtt:
            topics += [f"{f.zigbee2mqtt}/bridge/devices", f"{f.zigbee2mqtt}/#"]
        if f.homeassistant:
            topics.append(f"{f.homeassistant}/+/+/config")
            topics.append(f"{f.homeassistant}/+/+/+/config")
        if f.tasmota:
            topics += [f"{f.tasmota}/+/SENSOR", f"{f.tasmota}/+/LWT"]
        for prefix in f.shelly or ():
            topics += [f"{prefix}/status/+", f"{prefix}/events/rpc", f"{prefix}/online"]
        topics += [t for t in self.state.ha_by_state_topic if t not in topics]
        return topics

    def restore(self, z2m_maps: dict[str, bytes], ha_configs: dict[str, bytes]) -> None:
        """Loads what an earlier run persisted (``Decoded.persist``): Zigbee2MQTT's name map and the discovery
        configs, so that ids resolve and HA state topics are subscribed before any retained message arrives."""
        if self._z2m and (blob := z2m_maps.get(self._z2m[:-1])) is not None:
            z2m.restore(blob, self.state)
        if self._ha:
            sink = Sink(self.state, 0.0, self.dedupe_window, self.seen_interval)
            for config_topic, payload in ha_configs.items():
                ha.decode_config(config_topic, payload, self.state, sink, skip_prefixes=self._skip_ha)
            self.state.last_seen.clear()  # restoring is not hearing the device

    def decode(self, topic: str, payload: bytes, now: float) -> Decoded:
        """Decodes one message. Never raises: bad input gives ``Decoded(bad=reason)``, unknown topics
        ``Decoded(handled=False)``."""
        try:
            return self._decode(topic, payload, now)
        except Exception as exc:  # a decoder bug must not take the driver down; it is counted like bad input
            log.debug("decoder failed on a message: %r", exc)
            return Decoded(bad=f"decoder error ({type(exc).__name__})", hint=topic)

    def _decode(self, topic: str, payload: bytes, now: float) -> Decoded:
        limit = self.max_payload
        if self._z2m and topic == f"{self._z2m}bridge/devices":
            limit = max(limit, DEVICE_LIST_MAX_PAYLOAD)
        if len(payload) > limit:
            return Decoded(bad="payload too large", hint=topic)
        state = self.state
        sink = Sink(state, now, self.dedupe_window, self.seen_interval)
        entities = state.ha_by_state_topic.get(topic)
        if entities:
            ha.decode_state(entities, payload, sink)
        elif self._z2m and topic.startswith(self._z2m):
            z2m.decode(self._z2m[:-1], topic[len(self._z2m) :], payload, state, sink)
        elif self._ha and topic.startswith(self._ha):
            ha.decode_config(topic[len(self._ha) :], payload, state, sink, skip_prefixes=self._skip_ha)
        elif self._tasmota and topic.startswith(self._tasmota) and topic.endswith(("/SENSOR", "/LWT")):
            middle, _, kind = topic[len(self._tasmota) :].rpartition("/")
            tasmota.decode(middle, kind, payload, state, sink)
        elif not (self._shelly_on and self._shelly(topic, payload, sink)):
            return IGNORED
        result = sink.result()
        if result is not NOTHING:
            state.trim()
        return result

    def _shelly_prefix(self, prefix: str) -> bool:
        if prefix in self._shelly_prefixes:
            return True
        return self._shelly_any and bool(prefix) and "/" not in prefix

    def _shelly(self, topic: str, payload: bytes, sink: Sink) -> bool:
        if topic.endswith("/events/rpc"):
            prefix = topic[:-11]
            if self._shelly_prefix(prefix):
                shelly.decode_rpc(prefix, payload, self.state, sink)
                return True
        elif topic.endswith("/online"):
            prefix = topic[:-7]
            if self._shelly_prefix(prefix):
                shelly.decode_online(prefix, payload, self.state, sink)
                return True
        else:
            prefix, sep, component = topic.rpartition("/status/")
            if sep and ":" in component and "/" not in component and self._shelly_prefix(prefix):
                shelly.decode_status(prefix, component, payload, self.state, sink)
                return True
        return False
