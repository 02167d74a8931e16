"""The notification worker: claims due jobs from the database and hands them to the providers, exactly once.

The protocol, per job:

1. **Claim** (one short transaction): due jobs that are ``pending``, or ``sending`` with an expired lease (their
   worker died), become ``sending`` with this worker's lease, and ``intent_at`` is recorded if it was not. On
   PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``; on SQLite (one writer) the conditional update
   alone decides. Either way of two processes exactly one claims a job.
2. **Recover**: a job that had an intent before this claim may have reached the provider; the provider is asked
   (:meth:`Provider.lookup`) and a request it already accepted is recorded instead of sent again. A provider that
   cannot tell (SMTP) gets at most one duplicate per crash at that instant, counted in ``resends``.
3. **Send** with tenacity retries for refusals (5xx, 429); a timeout is ambiguous and is looked up, not retried
   blind. A step that cannot be sent now is retried later with backoff, marked late — never dropped.
4. **Record** ``sent`` with the provider's reference; callbacks update the delivery status.

Acknowledgement cancels pending jobs in the same transaction that records it; a claimed job re-checks its alarm
just before the call, so after an acknowledgement at most the calls already dialling go out.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final

from sqlalchemy import Connection, and_, or_, select, update
from tenacity import retry, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from cloud_sync.register import ingest
from cloud_sync.register.notify import alarms, schema, texts
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.links import Links, load_key
from cloud_sync.register.notify.providers import Ambiguous, CannotCheck, Outgoing, Permanent, Provider, Transient
from cloud_sync.register.registry import Registry

log = logging.getLogger(__name__)

LATE_AFTER_S: Final = 10.0
"""A step sent this long after it was due is recorded as late."""
MAX_BACKOFF_S: Final = 60.0
HANG_UP_WINDOW_S: Final = 600.0
LIVE_CALL: Final = ("accepted", "queued", "initiated", "ringing", "in-progress")
"""Call statuses (ours, then Twilio's) of a call that may still ring when its alarm is acknowledged."""


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        config: NotifyConfig,
        *,
        worker_id: str | None = None,
        batch: int = 32,
        poll_s: float = 0.5,
        threads: int = 8,
        silent_check_s: float = 60.0,
    ) -> None:
        self.registry = registry
        self.config = config
        self.worker_id = worker_id or f"{socket.gethostname()}:{threading.get_native_id()}:{id(self):x}"[:64]
        self.links = Links(load_key(registry.settings.state_dir), config.public_url)
        self.batch, self.poll_s, self.silent_check_s = batch, poll_s, silent_check_s
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="notify")
        self._inflight: set[Future[None]] = set()
        self._inflight_lock = threading.Lock()
        self._wake = alarms.wakeup(registry.engine)
        self.counters = {"sent": 0, "recovered": 0, "resends": 0, "failed": 0, "retried": 0, "cancelled": 0}

    # ------------------------------------------------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        """Works until ``stop`` is set; a failing round is logged and retried, never ends the loop."""
        last_silent = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_silent >= self.silent_check_s:
                    last_silent = time.monotonic()
                    with self._write() as conn:
                        if alarms.check_silent_hubs(conn, time.time()):
                            continue
                # Claim only what a free thread can take at once: a provider that stalls one request holds one
                # thread, never the steps of other alarms that come due meanwhile.
                with self._inflight_lock:
                    free = self.threads - len(self._inflight)
                if free > 0 and self.run_once(limit=free, wait=False):
                    continue
                self.hang_up_acknowledged()
            except Exception:  # a database hiccup must not stop notifications for good
                log.exception("notification round failed; retrying")
                stop.wait(1.0)
                continue
            with self._wake:
                self._wake.wait(self.poll_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_once(self, now: float | None = None, *, limit: int | None = None, wait: bool = True) -> int:
        """Claims a batch of due jobs and delivers them (``wait``: before returning); returns how many."""
        jobs = self._claim(time.time() if now is None else now, min(self.batch, limit or self.batch))
        futures = []
        for job in jobs:
            future = self._pool.submit(self._deliver, job)
            with self._inflight_lock:
                self._inflight.add(future)
            future.add_done_callback(self._done)
            futures.append(future)
        if wait:
            for f in futures:
                f.result()
        return len(jobs)

    def _done(self, future: Future[None]) -> None:
        with self._inflight_lock:
            self._inflight.discard(future)
        alarms.notify_dispatchers(self.registry.engine)  # a thread is free: claim again

    def _write(self) -> AbstractContextManager[Connection]:
        return urgent_transaction(self.registry)

    # ------------------------------------------------------------------------------------------------ claim

    def _claim(self, now: float, limit: int) -> list[dict[str, Any]]:
        j = schema.notify_jobs
        channels = [*self.config.providers, "desk"]
        claimable = and_(
            j.c.due_at <= now,
            j.c.channel.in_(channels),
            or_(j.c.state == "pending", and_(j.c.state == "sending", j.c.lease_until < now)),
        )
        with self._write() as conn:
            q = select(j).where(claimable).order_by(j.c.due_at).limit(limit)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = [dict(r) for r in conn.execute(q).mappings()]
            claimed = []
            for row in rows:
                won = conn.execute(
                    update(j)
                    .where(j.c.id == row["id"], claimable)
                    .values(
                        state="sending",
                        claimed_by=self.worker_id,
                        lease_until=now + self.config.lease_s,
                        attempts=j.c.attempts + 1,
                        intent_at=row["intent_at"] or now,
                    )
                ).rowcount
                if won == 1:
                    row["recovering"] = row["state"] == "sending" and row["intent_at"] is not None
                    row["intent_at"] = row["intent_at"] or now
                    claimed.append(row)
        return claimed

    # ------------------------------------------------------------------------------------ after an ack

    def hang_up_acknowledged(self, now: float | None = None) -> int:
        """Ends the calls still ringing for alarms acknowledged in the last minutes (not the call of the member
        who acknowledged: it ends by itself after thanking them). Returns how many were ended."""
        provider = self.config.providers.get("voice")
        if provider is None:
            return 0
        t = time.time() if now is None else now
        a, j = schema.alarms, schema.notify_jobs
        with self.registry.engine.connect() as conn:
            rows = conn.execute(
                select(j.c.id, j.c.provider_ref, j.c.member_id, a.c.acked_by)
                .join(a, a.c.id == j.c.alarm_id)
                .where(
                    a.c.acked_at > t - HANG_UP_WINDOW_S,
                    j.c.channel == "voice",
                    j.c.state == "sent",
                    j.c.provider_ref.is_not(None),
                    j.c.provider_status.in_(LIVE_CALL),
                )
            ).all()
        ended = 0
        for job_id, ref, member_id, acked_by in rows:
            if acked_by == f"member:{member_id}":
                continue
            try:
                provider.hang_up(ref)
            except Transient as exc:
                log.warning("a call could not be ended after the acknowledgement: %s", exc)
                continue
            with self._write() as conn:
                conn.execute(update(j).where(j.c.id == job_id).values(provider_status="closed_after_ack"))
            ended += 1
        return ended

    # --------------------------------------------------------------------------------------------- delivery

    def _deliver(self, job: dict[str, Any]) -> None:
        try:
            self._deliver_one(job)
        except Exception:  # one job's bug must not stop the others; the lease brings it back
            log.exception("delivering a notification failed unexpectedly")

    def _deliver_one(self, job: dict[str, Any]) -> None:
        with self.registry.engine.connect() as conn:
            alarm = conn.execute(select(schema.alarms).where(schema.alarms.c.id == job["alarm_id"])).mappings().first()
            person = next(
                (p for p in alarms.recipients(conn, job["household_id"]) if p["member_id"] == job["member_id"]), None
            )
        if alarm is None or alarm["acked_at"] is not None:
            self._finish(job, state="cancelled")
            self.counters["cancelled"] += 1
            return
        if job["channel"] == "desk":
            self._finish(job, state="sent", provider_status="on_desk")
            log.warning("an unacknowledged alarm is now on the operator's alarm desk")
            return
        address = "" if person is None else (person["email"] if job["channel"] == "email" else person["phone"])
        if person is None or not address:
            self._finish(job, state="skipped", error="the member or their contact is gone")
            return
        provider = self.config.providers[job["channel"]]
        msg = self._message(job, dict(alarm), person, address)
        if job["recovering"]:
            try:
                ref = provider.lookup(msg)
            except CannotCheck:
                ref = None
                self.counters["resends"] += 1
                self._bump_resends(job)
            except Transient as exc:
                self._later(job, str(exc), ambiguous=True)
                return
            if ref is not None:
                self.counters["recovered"] += 1
                log.info("a notification interrupted by a crash had been accepted; not sending it again")
                self._finish(job, state="sent", provider_ref=ref, provider_status="accepted")
                return
        try:
            ref = self._send(provider, msg)
        except Permanent as exc:
            self.counters["failed"] += 1
            log.error("a notification was refused for good: %s", exc)
            self._finish(job, state="failed", error=str(exc))
            return
        except Ambiguous as exc:
            self._later(job, str(exc), ambiguous=True)
            return
        except Transient as exc:
            self._later(job, str(exc), ambiguous=False)
            return
        self.counters["sent"] += 1
        self._finish(job, state="sent", provider_ref=ref, provider_status="accepted")

    def _send(self, provider: Provider, msg: Outgoing) -> str:
        # No new attempt after the provider timeout has passed: the whole delivery stays well inside the lease.
        send = retry(
            retry=retry_if_exception(lambda e: isinstance(e, Transient) and not isinstance(e, Ambiguous)),
            stop=stop_after_attempt(3) | stop_after_delay(self.config.timeout_s),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )(provider.send)
        return str(send(msg))

    def _message(self, job: dict[str, Any], alarm: dict[str, Any], person: dict[str, Any], address: str) -> Outgoing:
        lang, cat, place, late = person["language"], alarm["category"], alarm["place"], bool(alarm["late"])
        # From the intent, not the clock: every attempt of a job must carry the same text (see lookup).
        late = late or float(job["intent_at"]) - float(job["due_at"]) > LATE_AFTER_S
        link = self.links.url(alarm["id"], person["member_id"], at=float(job["intent_at"]))
        quoted = urllib.parse.quote(job["id"], safe="")
        base = self.config.public_url
        with self.registry.engine.connect() as conn:
            known = frozenset(
                conn.execute(
                    select(schema.notify_jobs.c.provider_ref).where(
                        schema.notify_jobs.c.provider_ref.is_not(None),
                        schema.notify_jobs.c.sent_at >= job["intent_at"] - 3600,
                    )
                ).scalars()
            )
        if job["channel"] == "voice":
            text = texts.voice(cat, place, lang, late=late)
        else:
            text = texts.sms(cat, place, lang, link, late=late)
        return Outgoing(
            job_id=job["id"],
            channel=job["channel"],
            to=address,
            text=text,
            subject=texts.headline(cat, place, lang, late=late),
            language=lang,
            status_url=f"{base}/v1/notify/twilio/status?job={quoted}",
            gather_url=f"{base}/v1/notify/twilio/gather?job={quoted}",
            not_before=float(job["intent_at"]),
            known_refs=known,
        )

    # ----------------------------------------------------------------------------------------------- record

    def _finish(self, job: dict[str, Any], *, state: str, **values: Any) -> None:
        j = schema.notify_jobs
        now = time.time()
        if state == "sent":
            values.update(sent_at=now, late=now - float(job["due_at"]) > LATE_AFTER_S)
        with self._write() as conn:
            # Only while it is still ours or in flight: an acknowledgement may have cancelled it meanwhile.
            conn.execute(
                update(j)
                .where(j.c.id == job["id"], j.c.state == "sending")
                .values(state=state, lease_until=None, **values)
            )

    def _bump_resends(self, job: dict[str, Any]) -> None:
        j = schema.notify_jobs
        with self._write() as conn:
            conn.execute(update(j).where(j.c.id == job["id"]).values(resends=j.c.resends + 1))

    def _later(self, job: dict[str, Any], error: str, *, ambiguous: bool) -> None:
        """Back off and try again (late, never dropped). An ambiguous failure keeps the intent so the next
        attempt asks the provider first; a clear refusal drops it so nothing is looked up in vain."""
        j = schema.notify_jobs
        self.counters["retried"] += 1
        backoff = min(MAX_BACKOFF_S, 2.0 ** min(int(job["attempts"]), 6))
        log.warning("a notification step could not be sent (%s); retrying in %.0f s", error, backoff)
        with self._write() as conn:
            conn.execute(
                update(j)
                .where(j.c.id == job["id"], j.c.state == "sending")
                .values(
                    lease_until=time.time() + backoff,
                    error=error[:500],
                    intent_at=job["intent_at"] if ambiguous else None,
                )
            )


@contextmanager
def urgent_transaction(registry: Registry) -> Iterator[Connection]:
    """A write transaction that on SQLite takes turns with ingest through its gate, in the urgent lane (as the
    alarm lane does): a notification step or an acknowledgement never waits behind a large backlog being written."""
    sqlite = registry.engine.dialect.name == "sqlite"
    gate = ingest._gate(registry).hold(urgent=True) if sqlite else nullcontext()
    with gate, registry.engine.begin() as conn:
        yield conn


def job_status(conn: Connection, job_id: str, sid: str, status: str) -> bool:
    """A provider's status callback: records the delivery status, and the reference if the job had not yet (the
    callback is proof the provider accepted it). Returns False for an unknown job."""
    j = schema.notify_jobs
    row = conn.execute(select(j.c.state, j.c.provider_ref).where(j.c.id == job_id)).first()
    if row is None:
        return False
    values: dict[str, Any] = {"provider_status": status[:24]}
    if row.provider_ref is None:
        values["provider_ref"] = sid[:255]
    if row.state == "sending":
        values.update(state="sent", sent_at=time.time(), lease_until=None)
    conn.execute(update(j).where(j.c.id == job_id).values(**values))
    return True


def start(registry: Registry, config: NotifyConfig | None = None, **kwargs: Any) -> tuple[Dispatcher, Any]:
    """Starts a dispatcher thread; returns it and a ``stop()`` that ends and joins it."""
    dispatcher = Dispatcher(registry, config or NotifyConfig.from_env(), **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), name="notify-dispatch", daemon=True)
    thread.start()

    def halt(timeout: float = 30.0) -> None:
        stop.set()
        alarms.notify_dispatchers(registry.engine)
        thread.join(timeout)
        dispatcher.close()

    return dispatcher, halt
