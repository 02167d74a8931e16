"""Prometheus gauges of alarms reaching people, read from the database at each scrape.

Read from ``alarms`` and ``notify_jobs``, not counted in the process that sends: every register process (each
worker, the alarm listener) runs a dispatcher and any of them may send an alarm's messages, so only the database
sees them all, and a scrape of any process (or host) gives the same figures, restarts included.

So the figures are of a **window** (label ``window``, the last hour and the last day, by when the register received
the alarm), not counters since a start:

* ``kotihub_register_alarm_notify_seconds`` — a gauge histogram: for each alarm received in the window whose first
  message has gone out (the first job ``sent``: accepted by the provider, or put on the alarm desk), the time from
  the alarm to it. ``since="received"`` from its arrival at the register (what the register answers for);
  ``since="raised"`` from the detector's own time on the hub (what the household lived, uplink included; the hub's
  clock, so a skewed clock skews it). ``urgent`` tells smoke from the device-health categories, whose policy may
  wait on purpose. ``histogram_quantile(0.99, …_bucket)`` gives the window's p99 without ``rate()``.
* ``kotihub_register_notifications`` — the window's jobs by channel and state, ``…_late`` those sent more than
  :data:`~.dispatch.LATE_AFTER_S` after due, ``…_delivery`` by the provider's last delivery status.
* ``kotihub_register_notifications_overdue`` — now, not a window: jobs due more than ``LATE_AFTER_S`` ago and not
  yet sent. Above zero means a dispatcher or a provider is not keeping up: the alert that matters most here.
* ``kotihub_register_alarms_open`` — the window's alarms neither acknowledged nor cleared.

Labels are closed sets (channel, state, a provider status the register knows; anything else is ``other``): a
provider's callback chooses the status text, and it must not be able to add series.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Final

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, Row, Select, func, select

from cloud_sync.register.notify import schema
from cloud_sync.register.notify.dispatch import LATE_AFTER_S

WINDOWS: Final = (("1h", 3_600.0), ("24h", 86_400.0))
BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Seconds; smoke's first message is meant to go out within the first two."""
CHANNELS: Final = ("sms", "voice", "email", "desk")
STATES: Final = ("pending", "sending", "sent", "failed", "cancelled", "skipped")
DELIVERY: Final = frozenset(
    {
        # ours: accepted by the provider, put on the alarm desk, a ringing call hung up after an acknowledgement
        "accepted",
        "on_desk",
        "closed_after_ack",
        # Twilio's message statuses, then its call statuses
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "canceled",
    }
)
OTHER: Final = "other"


def _closed(value: str | None, known: Collection[str]) -> str:
    return value if value is not None and value in known else OTHER


class NotifyCollector(Collector):
    """The gauges above, a few aggregate statements a scrape (indexed by arrival, by alarm and by due time)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self, now: float | None = None) -> Iterable[Metric]:
        now = time.time() if now is None else now
        a, j = schema.alarms, schema.notify_jobs
        widest = max(w for _, w in WINDOWS)
        received_since = a.c.received_at >= now - widest
        # Driven from the window's alarms (by arrival), each one's jobs found by alarm id. Not filtered on state
        # (``sent_at`` is set only as a job becomes sent): with ``state = 'sent'`` SQLite took the due index and read
        # every job ever sent for each alarm (bench/fleet_view.py: 65-145 ms a scrape at 2,000 hubs).
        first = select(func.min(j.c.sent_at)).where(j.c.alarm_id == a.c.id).correlate(a).scalar_subquery()
        first_sent = select(a.c.received_at, a.c.raised_at, a.c.urgent, first).where(received_since)

        def jobs(width: float) -> Select[str, str, bool, str | None, int]:
            # The jobs of the window's alarms by ``IN``: as a join, SQLite began from the jobs (2.3 s a scrape at
            # 50,000 hubs' six months of alarms, against 45 ms).
            in_window = select(a.c.id).where(a.c.received_at >= now - width)
            return (
                select(j.c.channel, j.c.state, j.c.late, j.c.provider_status, func.count())
                .where(j.c.alarm_id.in_(in_window))
                .group_by(j.c.channel, j.c.state, j.c.late, j.c.provider_status)
            )

        overdue = (
            select(j.c.channel, func.count())
            .where(j.c.state.in_(("pending", "sending")), j.c.due_at < now - LATE_AFTER_S)
            .group_by(j.c.channel)
        )
        # The window's alarms by arrival. The open test is one expression that no index serves: "acked_at IS NULL"
        # on its own made SQLite take alarms_open and read every alarm never acknowledged, six months of cleared
        # health alarms (0.9 s a scrape at 50,000 hubs).
        still_open = select(a.c.received_at, a.c.urgent).where(
            received_since, func.coalesce(a.c.acked_at, a.c.cleared_at).is_(None)
        )
        with self._engine.connect() as conn:
            firsts = conn.execute(first_sent).all()
            job_rows = {window: conn.execute(jobs(width)).all() for window, width in WINDOWS}
            overdue_rows = conn.execute(overdue).all()
            open_rows = conn.execute(still_open).all()

        yield self._latency(firsts, now)
        yield from self._outcomes(job_rows)
        g = GaugeMetricFamily(
            "kotihub_register_notifications_overdue",
            f"Notification jobs due more than {LATE_AFTER_S:.0f} s ago and not yet sent, by channel.",
            labels=["channel"],
        )
        counts = dict.fromkeys((*CHANNELS, OTHER), 0)
        for channel, n in overdue_rows:
            counts[_closed(channel, CHANNELS)] += n
        for channel, n in counts.items():
            g.add_metric([channel], n)
        yield g
        g = GaugeMetricFamily(
            "kotihub_register_alarms_open",
            "Alarms received in the window and neither acknowledged nor cleared.",
            labels=["urgent", "window"],
        )
        by_urgency = {(u, w): 0 for u in (True, False) for w, _ in WINDOWS}
        for received_at, urgent in open_rows:
            for window, width in WINDOWS:
                if received_at >= now - width:
                    by_urgency[(bool(urgent), window)] += 1
        for (urgent, window), n in by_urgency.items():
            g.add_metric([str(urgent).lower(), window], n)
        yield g

    @staticmethod
    def _latency(firsts: Iterable[tuple[float, float, bool, float | None]], now: float) -> Metric:
        g = GaugeHistogramMetricFamily(
            "kotihub_register_alarm_notify_seconds",
            "Alarms received in the window whose first message went out: seconds from the alarm (received by the "
            "register, or raised on the hub) to that message.",
            labels=["since", "urgent", "window"],
        )
        # (since, urgent, window) -> per-bucket counts (the last is +Inf) and the sum
        series: dict[tuple[str, bool, str], tuple[list[int], list[float]]] = {}
        for since in ("received", "raised"):
            for urgent in (True, False):
                for window, _ in WINDOWS:
                    series[(since, urgent, window)] = ([0] * (len(BUCKETS) + 1), [0.0])
        for received_at, raised_at, urgent, sent_at in firsts:
            if sent_at is None:  # nothing has gone out yet
                continue
            for since, start in (("received", received_at), ("raised", raised_at)):
                seconds = max(0.0, float(sent_at) - float(start))
                slot = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
                for window, width in WINDOWS:
                    if received_at >= now - width:
                        counts, total = series[(since, bool(urgent), window)]
                        counts[slot] += 1
                        total[0] += seconds
        for (since, urgent, window), (counts, total) in series.items():
            cumulative, running = [], 0
            for bound, n in zip((*(str(b) for b in BUCKETS), "+Inf"), counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            g.add_metric([since, str(urgent).lower(), window], cumulative, total[0])
        return g

    @staticmethod
    def _outcomes(rows: dict[str, Sequence[Row[str, str, bool, str | None, int]]]) -> Iterable[Metric]:
        states = GaugeMetricFamily(
            "kotihub_register_notifications",
            "Notification jobs of the alarms received in the window, by channel and state.",
            labels=["channel", "state", "window"],
        )
        late = GaugeMetricFamily(
            "kotihub_register_notifications_late",
            f"Of those, sent more than {LATE_AFTER_S:.0f} s after they were due, by channel.",
            labels=["channel", "window"],
        )
        delivery = GaugeMetricFamily(
            "kotihub_register_notifications_delivery",
            "Of those, by the provider's last delivery status (other: one the register does not know).",
            labels=["channel", "status", "window"],
        )
        by_state = {(c, s, w): 0 for c in (*CHANNELS, OTHER) for s in (*STATES, OTHER) for w, _ in WINDOWS}
        by_late = {(c, w): 0 for c in (*CHANNELS, OTHER) for w, _ in WINDOWS}
        by_delivery: dict[tuple[str, str, str], int] = {}
        for window, window_rows in rows.items():
            for channel, state, was_late, status, n in window_rows:
                ch = _closed(channel, CHANNELS)
                by_state[(ch, _closed(state, STATES), window)] += n
                if was_late and state == "sent":
                    by_late[(ch, window)] += n
                if status:
                    key = (ch, _closed(status, DELIVERY), window)
                    by_delivery[key] = by_delivery.get(key, 0) + n
        for labels, n in by_state.items():
            states.add_metric(list(labels), n)
        for labels2, n in by_late.items():
            late.add_metric(list(labels2), n)
        for labels, n in sorted(by_delivery.items()):
            delivery.add_metric(list(labels), n)
        return (states, late, delivery)
