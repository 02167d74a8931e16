"""Wakes a hub's command long-poll when a command is queued for it, in whichever register process queued it.

In one process, :meth:`Wakeups.notify` wakes the long-polls waiting here. Across processes (several workers, the
CLI) PostgreSQL carries it: a trigger on ``commands`` (migration ``0002_command_notify``) sends ``NOTIFY
kotihub_commands, '<hub id>'`` when a command is inserted, delivered at commit and only then, and each register
process LISTENs on one connection of its own and wakes the long-polls of that hub. While LISTEN is in place a
long-poll reads the database only when woken (and at its start: :meth:`Wakeups.reread_s`,
:meth:`Wakeups.quiet_since`); it re-reads
every ``command_poll_interval_s`` while the LISTEN connection is down (it is re-opened after the same interval,
and every waiter is woken then) and always on SQLite, where nothing crosses processes. The same connection
listens on the channels given to :class:`Wakeups` (live mode's marks, :mod:`.watching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping

from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHANNEL = "kotihub_commands"
ANY = ""
"""The key of a waiter woken by every notification."""


class Wakeups:
    """The notifier of command long-polls: ``notify``, ``wait``, and ``close`` to release every waiter at a stop."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        retry_s: float = 2.0,
        channels: Mapping[str, Callable[[str], str | None]] | None = None,
    ) -> None:
        """``channels``: other notification channels to LISTEN on, each with what to do with a payload; it returns
        the key to wake, if any (:mod:`.watching`'s marks)."""
        self._dsn = _dsn(engine) if engine is not None and engine.dialect.name == "postgresql" else None
        self._retry_s = retry_s
        self._channels = dict(channels or {})
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self._epoch = 0
        """How many times LISTEN has come up (:meth:`quiet_since`)."""
        self.closing = False

    @property
    def crosses_processes(self) -> bool:
        return self._dsn is not None

    def notify(self, key: str | None = None) -> None:
        """Wake the long-polls waiting on ``key`` (a hub id; all of them when None) in this process."""
        keys = self._waiting.keys() if key is None else (key, ANY)
        for waited_on in list(keys):
            for event in self._waiting.get(waited_on, ()):
                event.set()

    @contextlib.contextmanager
    def subscription(self, *keys: str) -> Iterator[asyncio.Event]:
        """An event set by the next :meth:`notify` for any of ``keys`` (a hub id; none: every notification) or the
        stop. Take it *before* reading the database: a command queued between the read and the wait then still
        wakes the wait."""
        event = asyncio.Event()
        keys = keys or (ANY,)
        for key in keys:
            self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiters = self._waiting[key]
                waiters.discard(event)
                if not waiters:
                    del self._waiting[key]

    def reread_s(self, poll_s: float) -> float | None:
        """How long a long-poll may wait before reading the database again unwoken: ``poll_s`` where nothing
        crosses processes (SQLite) or while the LISTEN connection is down; None (until woken) while it is up,
        since every command and every change a long-poll answers for is then notified (and all waiters are woken
        when LISTEN comes back, for what was queued while it was down)."""
        return None if self.listening.is_set() else poll_s

    @property
    def epoch(self) -> int:
        return self._epoch

    def quiet_since(self, epoch: int) -> bool:
        """Whether LISTEN has been up without a break since :attr:`epoch` was ``epoch``: a waiter not woken since
        then missed nothing, and need not read the database again."""
        return self.listening.is_set() and self._epoch == epoch

    async def wait(self, timeout: float, hub_id: str = ANY) -> None:
        """Until a command for ``hub_id`` may have been queued, the stop, or ``timeout`` seconds."""
        with self.subscription(hub_id) as event:
            await wait_for(event, timeout)

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening (PostgreSQL only), returning once LISTEN is in place or after ``timeout`` seconds (then
        the re-reads carry on alone until it is)."""
        if self._dsn is None or self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(self._dsn), name="command-wakeups")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.listening.wait()

    def close(self) -> None:
        self.closing = True
        if self._listener is not None:
            self._listener.cancel()
        self.notify()

    async def _listen(self, dsn: str) -> None:
        import psycopg  # the postgres extra: only a register on PostgreSQL gets here

        failures = 0
        while not self.closing:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    for channel in (CHANNEL, *self._channels):
                        await conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    self._epoch += 1
                    failures = 0
                    # Commands queued while nobody listened are found by this re-read, not lost.
                    self.notify()
                    async for note in conn.notifies():
                        self._heard(note.channel, note.payload)
            except (psycopg.Error, OSError) as exc:
                failures += 1
                if failures == 1:  # once per outage, not per retry
                    log.warning("command wake-ups from other processes paused (%s); polling", type(exc).__name__)
            self.listening.clear()
            # Long-polls waiting for a notification alone would not hear one now: they go back to re-reading.
            self.notify()
            await asyncio.sleep(self._retry_s)

    def _heard(self, channel: str, payload: str) -> None:
        if channel == CHANNEL:
            self.notify(payload or None)
        elif (key := self._channels[channel](payload)) is not None:
            self.notify(key)


def _dsn(engine: Engine) -> str:
    # psycopg takes the URL form; SQLAlchemy's "+psycopg" driver suffix is not part of it.
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def wait_for(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` seconds passed."""
    with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can drop a cancel on Python 3.11
        async with asyncio.timeout(timeout):
            await event.wait()
