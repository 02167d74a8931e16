"""The MQTT driver: one broker connection, decoded messages fed to the hub, reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

import aiomqtt

from drivers.base import Credentials, Discovered, Driver, DriverContext, DriverHealth, HubPort, Link
from drivers.memory import Memory
from drivers.mqtt import ha, z2m
from drivers.mqtt.acks import RECENT_NS, Acker, Recent, digest, manual_acks, received
from drivers.mqtt.common import raise_if_cancelled
from drivers.mqtt.config import MqttConfig
from drivers.mqtt.decoders import MqttDecoder
from drivers.mqtt.held import HELD_NS, Held, HeldMessage
from drivers.mqtt.siren import MqttSirens
from gateway.backoff import Backoff
from gateway.errors import ConfigError, TransientError
from gateway.model import DeviceInfo

__all__ = ["MqttConfig", "MqttDriver"]

log = logging.getLogger(__name__)

PASSWORD_CREDENTIAL = "mqtt.password"  # noqa: S105 -- the name of the credential, not a secret
# A connection that stayed up this long counts as healthy: the next failure starts over at reconnect_min.
STABLE_AFTER_S = 10.0


DISCONNECT_TIMEOUT_S = 5.0


async def _leave(client: aiomqtt.Client) -> bool:
    """Leaves the connection; False if the broker never acknowledged our DISCONNECT within the limit.

    aiomqtt waits for that acknowledgement without a limit, so a driver stopped at the wrong moment (the daemon's
    SIGTERM) would never finish; past the limit the client is abandoned and a fresh one is used.
    """
    try:
        async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
            await client.__aexit__(None, None, None)
    except TimeoutError:
        log.warning("the MQTT broker did not acknowledge the disconnect within %.0f s", DISCONNECT_TIMEOUT_S)
        return False
    return True


class MqttHealth(DriverHealth, frozen=True, kw_only=True):
    """The MQTT driver's health: the broker connection and its delivery counters (``kotihub status``)."""

    connected: bool
    broker: str
    """``host:port`` (the diagnostics bundle redacts it)."""
    connects: int
    disconnects: int
    ignored: int
    subscriptions: int
    unacked: int
    acked: int
    early_commits: int
    most_unacked: int
    redeliveries: int
    held: int
    held_dropped: int
    devices: int
    broker_error: str
    """Why the last connection failed or was lost; ``""`` before any failure. (Not ``last_error``: that name is the
    supervisor's, why the driver task last failed.)"""


class MqttDriver(Driver):
    """Subscribes to the topics its config implies and hands decoded devices, events and readings to the hub."""

    name: ClassVar[str] = "mqtt"
    Config: ClassVar[type[MqttConfig]] = MqttConfig

    def __init__(
        self,
        config: MqttConfig,
        credentials: Credentials,
        context: DriverContext | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, credentials, context)
        self.config: MqttConfig = config
        self._clock = clock
        self._decoder = self._new_decoder()
        self._connected = False
        self._changed = asyncio.Condition()
        self._subscribed: list[str] = []
        self.connects = 0
        self.disconnects = 0
        self.ignored = 0
        self.redeliveries = 0
        self.last_error = ""
        self.memory: Memory = self.context.memory
        """Where the driver persists its name maps, held messages and handled-message digests (the daemon's store)."""
        self._recent = Recent()
        self._held = Held(config.max_held)
        self._dups: dict[int, bool] = {}
        self._acker: Acker | None = None
        self.acked = 0
        self.early_commits = 0

    def _new_decoder(self) -> MqttDecoder:
        c = self.config
        return MqttDecoder(
            c.families(), dedupe_window=c.dedupe_window, seen_interval=c.seen_interval, max_payload=c.max_payload
        )

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_connected(self, timeout: float, *, connects: int = 1) -> None:
        """Returns once connected and subscribed for at least the ``connects``-th time (2: reconnected once);
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._connected and self.connects >= connects)

    async def _set_connected(self, connected: bool) -> None:
        async with self._changed:
            if connected:
                self.connects += 1
            elif self._connected:
                self.disconnects += 1
            self._connected = connected
            self._changed.notify_all()

    async def run(self, hub: HubPort) -> None:
        # A fresh decoder: its last-state memory may hold a smoke state the hub never accepted (hub.event raised,
        # which is why we are being restarted), and the broker's redelivery of it must not count as a duplicate.
        self._decoder = self._new_decoder()
        memory = self.memory
        self._decoder.restore(await memory.load(z2m.NS), await memory.load(ha.NS))
        self._recent = Recent()
        self._recent.restore(await memory.load(RECENT_NS))
        self._held = Held(self.config.max_held)
        self._held.restore(await memory.load(HELD_NS))
        client = await self._session_client()
        backoff = Backoff(self.config.reconnect_min, self.config.reconnect_max)
        loop = asyncio.get_running_loop()
        # The aiomqtt reconnect idiom: one client, re-entered after every failure.
        while True:
            connected_at: float | None = None
            try:
                await client.__aenter__()
                raise_if_cancelled()
                try:
                    async with asyncio.TaskGroup() as tg:
                        connected_at = loop.time()
                        await self._subscribe(client)
                        await self._set_connected(True)
                        log.info("connected to the MQTT broker, %d subscriptions", len(self._subscribed))
                        # Subscribing waits for the broker's SUBACK: do it beside the message loop, not in it.
                        new_topics: asyncio.Queue[str] = asyncio.Queue()
                        tg.create_task(self._subscriber(client, new_topics), name="mqtt-subscriber")
                        acker = Acker(client, memory, self.config.inflight_window)
                        self._acker = acker
                        tg.create_task(acker.run(), name="mqtt-acker")
                        # Held from an earlier run, and resolvable by the map restored from the store: now.
                        await self._release_held(hub, new_topics, final=False)
                        raise_if_cancelled()  # subscribing awaited SUBACKs
                        async for message in client.messages:
                            await acker.wait_room()
                            await self._handle(hub, new_topics, message, acker)
                            raise_if_cancelled()
                            # Messages already received are handled in the same event-loop tick, so that their
                            # readings and records share one store op (and one commit future) instead of one each.
                            for queued in received(client):
                                await acker.wait_room()
                                await self._handle(hub, new_topics, queued, acker)
                finally:
                    self._retire_acker()
                    if not await _leave(client):
                        client = await self._session_client()
            except* aiomqtt.MqttError as group:
                self.last_error = str(group.exceptions[0])
            finally:
                # Shielded so that a cancelled driver still records that it is no longer connected.
                await asyncio.shield(self._set_connected(False))
            raise_if_cancelled()  # a cancel that a failing subscriber's TaskGroup turned into its MqttError
            if connected_at is not None and loop.time() - connected_at >= STABLE_AFTER_S:
                backoff.reset()
            delay = backoff.next()
            log.warning("MQTT broker connection failed or lost (%s); retrying in %.1f s", self.last_error, delay)
            await asyncio.sleep(delay)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        self._subscribed = self._decoder.subscriptions()
        for topic in self._subscribed:
            await client.subscribe(topic, qos=1)

    async def _subscriber(self, client: aiomqtt.Client, topics: asyncio.Queue[str]) -> None:
        while True:
            topic = await topics.get()
            if topic in self._subscribed:
                continue  # HA re-publishes discovery configs; one subscription per state topic is enough
            await client.subscribe(topic, qos=1)
            # A cancel landing as the SUBACK arrives is dropped by 3.11's wait_for: without this the subscriber
            # would wait on the queue for ever and the driver's TaskGroup, cancelled, would never finish.
            raise_if_cancelled()
            self._subscribed.append(topic)

    def _retire_acker(self) -> None:
        # Acks are per connection: what was not acknowledged now is redelivered (with dup) on the next one.
        if self._acker is not None:
            self.acked += self._acker.acked
            self.early_commits += self._acker.early_commits
            self._acker = None
        self._dups.clear()

    async def _handle(
        self, hub: HubPort, new_topics: asyncio.Queue[str], message: aiomqtt.Message, acker: Acker
    ) -> None:
        self.stats.seen()
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = bytes(payload) if isinstance(payload, bytearray) else str(payload or "").encode()
        topic = message.topic.value
        qos = message.qos
        if not qos:  # nothing to acknowledge; nothing the broker would redeliver
            await self._process(hub, new_topics, topic, payload, self._clock())
            return
        key = digest(topic, payload, message.mid)
        if self._dups.pop(message.mid, False) and (earlier := self._recent.committed(key)) is not None:
            # A redelivery of a message we handled, whose PUBACK was lost: acknowledge it once that commit is done.
            self.redeliveries += 1
            self.stats.duplicates += 1
            acker.add(message.mid, qos, earlier)
            return
        await self._process(hub, new_topics, topic, payload, self._clock())
        # Submitted after everything the message produced, so its commit implies theirs.
        acker.add(message.mid, qos, self._recent.add(key, self.memory))

    async def _process(
        self,
        hub: HubPort,
        new_topics: asyncio.Queue[str],
        topic: str,
        payload: bytes,
        ts: float,
        *,
        held_key: str | None = None,
        final: bool = False,
    ) -> None:
        """Decodes one message and hands what it meant to the hub; ``held_key``: it was held before."""
        decoded = self._decoder.decode(topic, payload, ts)
        if not decoded.handled:
            self.ignored += 1
            return
        if decoded.hold:
            if held_key is None:
                self._held.add(HeldMessage(topic, payload, ts), self.memory)
            elif final:  # the device list came and does not name it: not a device of this bridge
                self._held.release(held_key, self.memory)
                self.stats.bad_payload(topic, "zigbee2mqtt friendly name not in bridge/devices")
            return
        if decoded.bad is not None:
            self.stats.bad_payload(decoded.hint, decoded.bad)
        self.stats.duplicates += decoded.duplicates
        for info in decoded.devices:
            await hub.device_seen(info)
        # Events before readings: a smoke alarm must not wait behind a batch of readings.
        for event in decoded.events:
            await hub.event(event)
        if decoded.readings:
            await hub.readings(decoded.readings)
        if held_key is not None:
            self._held.release(held_key, self.memory)  # deleted in the same commit as its readings
        for ns, record, value in decoded.persist:
            self.memory.save(ns, record, value)
        for state_topic in decoded.subscribe:
            new_topics.put_nowait(state_topic)
        if decoded.remapped and held_key is None:
            await self._release_held(hub, new_topics, final=True)

    async def _release_held(self, hub: HubPort, new_topics: asyncio.Queue[str], *, final: bool) -> None:
        """Decodes held messages again (the name map changed); ``final``: drop those that still do not resolve."""
        for key, held in self._held.items():
            await self._process(hub, new_topics, held.topic, held.payload, held.ts, held_key=key, final=final)

    async def discover(self, timeout: float) -> list[Discovered]:
        """Listens on a separate connection for ``timeout`` seconds (retained device lists and states arrive at
        once) and lists every device heard, known to the hub or not."""
        decoder = self._new_decoder()
        found: dict[str, Discovered] = {}
        client = await self._client(f"{self.config.client_id}-discover-{os.urandom(3).hex()}", clean_session=True)
        try:
            async with client:
                for topic in decoder.subscriptions():
                    await client.subscribe(topic)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        async for message in client.messages:
                            payload = message.payload
                            if not isinstance(payload, bytes):
                                continue
                            decoded = decoder.decode(message.topic.value, payload, self._clock())
                            for info in decoded.devices:
                                found[info.device_id] = Discovered(
                                    device_id=info.device_id,
                                    driver=self.name,
                                    kind=info.kind,
                                    model=info.model,
                                    address=info.address,
                                )
                            for topic in decoded.subscribe:
                                await client.subscribe(topic)
        except aiomqtt.MqttError as exc:
            raise TransientError(f"MQTT broker unreachable: {exc}") from exc
        return sorted(found.values(), key=lambda d: d.device_id)

    def siren_output(self, devices: Callable[[], Iterable[DeviceInfo]]) -> MqttSirens:
        """The sirens this broker reaches (configured relays, and the Zigbee sirens among ``devices()``), on a
        connection of their own."""
        suffix = os.urandom(3).hex()
        return MqttSirens(
            lambda: self._client(f"{self.config.client_id}-sirens-{suffix}", clean_session=True),
            self.config.sirens,
            devices,
        )

    def link(self) -> Link:
        return Link(check="mqtt", messages="mqtt", up=self.connected, reason=self.last_error or "-")

    def health(self) -> MqttHealth:
        acker = self._acker
        return MqttHealth(
            link=self.link(),
            counters=self.stats.counters(),
            connected=self.connected,
            broker=f"{self.config.host}:{self.config.port}",
            connects=self.connects,
            disconnects=self.disconnects,
            ignored=self.ignored,
            subscriptions=len(self._subscribed),
            unacked=acker.unacked if acker is not None else 0,
            acked=self.acked + (acker.acked if acker is not None else 0),
            early_commits=self.early_commits + (acker.early_commits if acker is not None else 0),
            most_unacked=acker.most_unacked if acker is not None else 0,
            redeliveries=self.redeliveries,
            held=len(self._held),
            held_dropped=self._held.dropped,
            devices=len(self._decoder.state.last_seen),
            broker_error=self.last_error,
        )

    def _password(self) -> str | None:
        secret = self.credentials.get(PASSWORD_CREDENTIAL)
        if secret is None:
            return None
        try:
            return secret.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError([(f"credential {PASSWORD_CREDENTIAL}", "is not UTF-8")]) from None

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.config.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([("drivers.mqtt.ca_file", f"cannot load: {exc.__class__.__name__}")]) from exc

    async def _client(self, identifier: str, *, clean_session: bool) -> aiomqtt.Client:
        # Loading a CA bundle reads files: keep it off the event loop.
        tls = await asyncio.to_thread(self._tls_context) if self.config.tls else None
        password = self._password()
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username or None,
            password=password,
            identifier=identifier,
            keepalive=self.config.keepalive,
            clean_session=clean_session,
            tls_context=tls,
            logger=logging.getLogger(f"{__name__}.client"),
        )
        return client

    async def _session_client(self) -> aiomqtt.Client:
        """The daemon's own connection: persistent session (per config), acknowledgements sent by the driver."""
        client = await self._client(self.config.client_id, clean_session=not self.config.persistent_session)
        self._dups = manual_acks(client)
        return client
