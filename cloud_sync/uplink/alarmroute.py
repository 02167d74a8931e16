"""Where the alarm lane sends: the register's alarm listener when it announced one, else the main URL.

A register with an alarm listener (``kotihub-register serve --alarm-port``) names it in the
:data:`~cloud_sync.protocol.ALARM_URL_HEADER` header of its replies; nothing is set on the hub. The hub takes it only
if it is ``https://`` on **the host of the register URL it already uses**, with an explicit port and nothing else
(no user, path, query or fragment): the alarm still goes to the machine the hub was set up to trust, verified
against the register's CA with the hub's own certificate, so a hostile or mistaken reply can move alarms to another
port of that host at most, never to another host or to plain HTTP. A refused value is logged once (and again only
when it changes) and alarms keep going to the main URL.

An alarm is never late because the listener is down: a send there that fails for any reason (refused, TLS failure,
timeout, an error status) goes to the main URL at once, and the listener is tried again after :data:`RETRY_S`. A
batch the listener committed before the failure is recognised by the main URL as a duplicate of ``(hub, lane, seq)``.

**The alarm connection is kept open.** A register closes an idle connection after 35 s, so nearly every smoke alarm
(minutes or months apart) paid a TCP connect and a TLS handshake with certificates both ways before its request:
two more round trips over the home's internet and the register's costliest CPU work, at the moment it matters. The
alarm lane therefore pings its connection while idle (``uplink.alarm_keepalive_s``, 120 s; ``GET
/v1/alarm/ping``, answered without touching the database), and the register keeps a hub's alarm connection open
``alarm_keep_alive_s`` (180 s, said in ``Keep-Alive: timeout=N``; pings never come further apart than 80 % of it).
A ping also finds a dead listener before an alarm needs it (rested as a failed alarm would rest it).

A kept connection can die without a word — a home router's NAT that forgot it, a register machine that lost power —
and a request written into it waits for the read timeout. So an alarm's first try on a kept connection waits at most
:data:`FIRST_ANSWER_S` (or :data:`FIRST_ANSWER_PINGS` of its last ping's round trips, on a slow link) for its
answer, then goes again over a new connection (to the main URL), as a failed listener does: a batch the first try
committed is a duplicate there. An alarm that comes while a ping is on the wire does not wait for it
(cloud_sync.uplink.lanes).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from cloud_sync import protocol as p
from cloud_sync.uplink.client import ConnectionLost, RegisterClient, RegisterRejected, RegisterUnavailable
from gateway.store import OutboxItem

log = logging.getLogger(__name__)

RETRY_S = 60.0
"""After a failed send to the alarm listener, alarms go to the main URL for this long before it is tried again."""
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 10.0
"""The listener's timeouts (or the uplink's, if shorter): a listener that hangs delays an alarm by at most this
before it goes to the main URL."""
MAX_URL_LENGTH = 300
FIRST_ANSWER_S = 2.0
"""An alarm sent over a kept connection that has no answer by then goes again over a new one (to the main URL)."""
FIRST_ANSWER_PINGS = 4
"""… or by this many times the last ping's round trip, if that is longer."""
KEEP_ALIVE_DEFAULT_S = 35.0
"""How long a register that does not say (no ``Keep-Alive`` header) keeps an idle connection."""
KEPT_SHARE = 0.8
"""Pings come at most this share of the register's keep-alive apart, so the connection is pinged before it closes."""
MIN_PING_INTERVAL_S = 10.0
"""However short a keep-alive the register announces, pings come no closer together (unless configured so)."""
PING_TIMEOUT_S = 5.0
PINGS_REFUSED_REST_S = 3600.0
"""A register that refuses pings (an older one, without the route) is asked again after this."""


class BadAlarmURL(ValueError):
    """An announced alarm URL the hub does not take (permanent for that value)."""


def check_alarm_url(value: str, register_url: str) -> str:
    """The announced alarm URL, normalised to ``https://host:port``; :class:`BadAlarmURL` says why it is refused."""
    try:
        return _checked(value, register_url)
    except BadAlarmURL:
        raise
    except ValueError as exc:  # urlsplit's own: a port out of range, a malformed IPv6 address
        raise BadAlarmURL(str(exc)) from None


def _checked(value: str, register_url: str) -> str:
    if len(value) > MAX_URL_LENGTH or not value.isascii() or not value.isprintable():
        raise BadAlarmURL("not a URL")
    url, main = urlsplit(value), urlsplit(register_url)
    if url.scheme != "https":
        raise BadAlarmURL("not https")
    if url.username is not None or url.password is not None or url.path not in ("", "/") or url.query or url.fragment:
        raise BadAlarmURL("more than https://host:port")
    if not url.hostname or url.hostname != main.hostname:
        raise BadAlarmURL(f"not the register's host {main.hostname}")
    port = url.port  # ValueError if out of range
    if port is None or port == 0:
        raise BadAlarmURL("no port")
    return f"https://{url.netloc}"


class AlarmRoute:
    """What the hub knows of the alarm listener: the URL announced (checked), and whether it is resting after a
    failure. Told by every reply of the main URL; used from the uplink's HTTP threads, hence the lock."""

    def __init__(
        self, register_url: str, *, retry_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.main = register_url.rstrip("/")
        self.url: str | None = None
        self.refused = 0
        """Announcements refused (counted every time; logged once per distinct value)."""
        self._retry_s, self._clock = RETRY_S if retry_s is None else retry_s, clock
        self.last_failure: str | None = None
        """Why the listener last failed (for ``kotihub status``)."""
        self._last_refused: str | None = None
        self._down_until: float | None = None
        self._lock = threading.Lock()

    def announced(self, value: str | None) -> None:
        """A successful reply of the main URL said this (None: it announces no listener, e.g. an older register)."""
        with self._lock:
            if value is None:
                if self.url is not None:
                    log.info("the register no longer announces an alarm listener; alarms go to %s", self.main)
                self.url = None
                return
            if self.url is not None and value == self.url:
                return
            try:
                url = check_alarm_url(value, self.main)
            except BadAlarmURL as exc:
                self.refused += 1
                if value != self._last_refused:
                    self._last_refused = value
                    log.warning("refused the alarm URL the register announced (%s): %.300r", exc, value)
                if self.url is not None:
                    log.info("alarms go to %s again", self.main)
                self.url = None
                return
            if url != self.url:
                log.info("alarms go to the register's alarm listener at %s", url)
                self.url, self._down_until = url, None

    def state(self) -> Literal["none", "serving", "resting"]:
        """For the heartbeat: no listener announced, one serving, or one resting after a failure."""
        if self.url is None:
            return "none"
        return "serving" if self.target() is not None else "resting"

    def target(self) -> str | None:
        """The listener's URL if one is known and not resting after a failure."""
        with self._lock:
            if self.url is None or (self._down_until is not None and self._clock() < self._down_until):
                return None
            return self.url

    def failed(self, url: str, exc: Exception) -> None:
        with self._lock:
            self.last_failure = f"{type(exc).__name__}: {exc}"[:300]
            if self._down_until is None:
                log.warning(
                    "the alarm listener %s failed (%s); alarms go to %s, retrying it in %.0f s",
                    url,
                    exc,
                    self.main,
                    self._retry_s,
                )
            self._down_until = self._clock() + self._retry_s

    def served(self, url: str) -> None:
        with self._lock:
            if self._down_until is not None:
                log.info("the alarm listener %s answers again", url)
            self._down_until = None


class AlarmClient:
    """The alarm lane's client: the listener's connection while it answers, the main URL's otherwise (each its own
    connection, never the bulk lanes'), kept open between alarms by pings (:meth:`ping`)."""

    def __init__(self, route: AlarmRoute, make: Callable[..., RegisterClient]) -> None:
        """``make(url, connect_timeout=…, read_timeout=…)``: a client of its own on ``url`` (timeouts: None keeps the
        uplink's)."""
        self.route = route
        self._make = make
        self.main = make(route.main)
        self._listener: RegisterClient | None = None
        self.server_time: tuple[float, float] | None = None
        self.served_by: str | None = None
        """The URL that acknowledged the last batch."""
        self.pings = 0
        self.ping_failures = 0
        self.ping_ms: float | None = None
        """How long the last answered ping took: a round trip to the register and back, nothing else."""
        self.reopened = 0
        """Alarms sent again over a new connection because the kept one gave no answer in time."""
        self.ping_started: float | None = None
        """Monotonic time the ping on the wire now was sent; None when none is."""
        self.ping_failing = False
        """The last ping failed (cleared by the next answered one)."""
        self._pinged_at = -math.inf
        self._pings_rest_until = -math.inf

    def _listener_for(self, url: str) -> RegisterClient:
        if self._listener is None or self._listener.base != url:
            if self._listener is not None:
                self._listener.close()
            self._listener = self._make(url, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
        return self._listener

    def _first_answer(self, client: RegisterClient) -> float | None:
        """The read timeout of an alarm's first try: short on a kept connection, which may have died without a word
        (a NAT that forgot it, a register machine gone), so the alarm goes again over a new one soon."""
        if not client.kept_alive(KEEP_ALIVE_DEFAULT_S):
            return None
        # A slow link (satellite, a congested mobile cell) gets longer: a few of its last ping's round trips.
        return max(FIRST_ANSWER_S, FIRST_ANSWER_PINGS * (self.ping_ms or 0.0) / 1000)

    def ingest(self, hub_id: str, lane: str, items: list[OutboxItem]) -> p.IngestAck:
        url = self.route.target()
        if url is not None:
            client = self._listener_for(url)
            first = self._first_answer(client)
            try:
                ack = client.ingest(hub_id, lane, items, read_timeout=first)
            except RegisterRejected as exc:
                # Refused for good there: the main URL decides (the same 4xx, split and dead-lettered as ever).
                # A 404 means whatever listens there is no alarm listener: rest it like an outage.
                if exc.status == 404:
                    self.route.failed(url, exc)
            except RegisterUnavailable as exc:
                client.close()
                self.route.failed(url, exc)
                if first is not None and isinstance(exc, ConnectionLost):
                    self.reopened += 1
            else:
                self.route.served(url)
                self.server_time, self.served_by = client.server_time, url
                return ack
        first = self._first_answer(self.main)
        try:
            ack = self.main.ingest(hub_id, lane, items, read_timeout=first)
        except ConnectionLost:
            if first is None:
                raise
            # Once more over a new connection, with the full timeout; a batch the first try committed is a duplicate.
            self.reopened += 1
            self.main.close()
            ack = self.main.ingest(hub_id, lane, items)
        self.server_time, self.served_by = self.main.server_time, self.route.main
        return ack

    def ping_due(self, every_s: float) -> float | None:
        """When (monotonic) the alarm connection should next be pinged, pinging every ``every_s`` but never less
        often than the register says it keeps an idle connection; None: no pings (``every_s`` 0)."""
        if every_s <= 0:
            return None
        url = self.route.target()
        client = self.main if url is None else self._listener if self._listener and self._listener.base == url else None
        if client is None:
            return self._pings_rest_until  # a listener not yet connected: at once (unless resting)
        # A register that says it keeps connections only a moment (misconfigured, or hostile) gets pings no oftener
        # than MIN_PING_INTERVAL_S: the connection closes between them, which costs an alarm a handshake, no more.
        interval = min(every_s, max(MIN_PING_INTERVAL_S, KEPT_SHARE * client.kept_s)) if client.kept_s else every_s
        last = max(client.answered_at or -math.inf, self._pinged_at)
        return max(last + interval, self._pings_rest_until)

    def ping(self) -> None:
        """``GET`` :data:`~cloud_sync.protocol.ALARM_PING_PATH` on the connection the next alarm would take, so that
        it stays open (and a dead listener is found before an alarm needs it). Never raises: a failure is counted
        and, on the listener, rests it as a failed alarm would."""
        url = self.route.target()
        client = self._listener_for(url) if url is not None else self.main
        started = self._pinged_at = self.ping_started = time.monotonic()
        try:
            client.request("GET", p.ALARM_PING_PATH, read_timeout=PING_TIMEOUT_S)
        except RegisterRejected as exc:
            # An older register, which has no ping: its connections close when idle, as they always did.
            self._pings_rest_until = started + PINGS_REFUSED_REST_S
            log.info("the register does not answer alarm pings (%s); not pinging for an hour", exc.status)
        except RegisterUnavailable as exc:
            client.close()
            self.ping_failures += 1
            self.ping_failing = True
            log.debug("alarm ping failed: %s", exc)
            if url is not None:
                self.route.failed(url, exc)
        else:
            self.pings += 1
            self.ping_failing = False
            self.ping_ms = (time.monotonic() - started) * 1000
            if url is not None:
                self.route.served(url)
        finally:
            self.ping_started = None

    def summary(self) -> dict[str, Any]:
        """What ``kotihub status`` shows of the alarm connection."""
        url = self.route.target()
        client = self._listener if url is not None else self.main
        return {
            "url": url or self.route.main,
            "kept_open": client is not None and client.kept_alive(KEEP_ALIVE_DEFAULT_S),
            "pings": self.pings,
            "ping_failures": self.ping_failures,
            "ping_ms": self.ping_ms,
            "reopened": self.reopened,
        }

    def health(self) -> p.AlarmPathHealth:
        """What the health heartbeat says of the alarm connection (the operator's fleet view and metrics)."""
        summary = self.summary()
        return p.AlarmPathHealth(
            kept_open=bool(summary["kept_open"]),
            pings=self.pings,
            ping_failures=self.ping_failures,
            failing=self.ping_failing,
            ping_ms=None if self.ping_ms is None else round(min(self.ping_ms, 600_000.0), 1),
            listener=self.route.state(),
        )

    def close(self) -> None:
        self.main.close()
        if self._listener is not None:
            self._listener.close()
