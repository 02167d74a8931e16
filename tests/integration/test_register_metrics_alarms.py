"""The operator's gauges of alarms reaching people and of release rollouts, read from the database at a scrape
(``cloud_sync.register.notify.metrics``, ``cloud_sync.register.rollout_metrics``), on SQLite and PostgreSQL, and
served by the real register at ``/metrics``."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from cloud_sync import releases as rel
from cloud_sync.register import rollout
from cloud_sync.register.notify import schema
from cloud_sync.register.notify.metrics import NotifyCollector
from cloud_sync.register.rollout_metrics import MAX_ROLLOUTS, RolloutCollector
from tests.integration.test_register import bearer
from tests.support.register import RunningRegister

NOW = 1_790_000_000.0
HOUSEHOLD = "household-q7x"


def _alarm(alarm_id: str, *, received: float, raised: float, urgent: bool = True, **kw: Any) -> dict[str, Any]:
    return {
        "id": alarm_id,
        "household_id": HOUSEHOLD,
        "hub_id": "hub",
        "device_id": "dev",
        "category": "smoke" if urgent else "device_offline",
        "urgent": urgent,
        "place": "",
        "raised_at": raised,
        "received_at": received,
        "late": False,
        "acked_at": None,
        "cleared_at": None,
        **kw,
    }


def _job(alarm_id: str, n: int, channel: str, state: str, *, due: float, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"{alarm_id}.{n}",
        "household_id": HOUSEHOLD,
        "alarm_id": alarm_id,
        "step": n,
        "channel": channel,
        "member_id": "m",
        "due_at": due,
        "state": state,
        "attempts": 0,
        "late": False,
        "resends": 0,
        "sent_at": None,
        "provider_status": None,
        **kw,
    }


def _samples(collector: Any, **kw: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in collector.collect(**kw):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_alarm_latency_outcomes_and_overdue_jobs_from_the_database(register_any: RunningRegister) -> None:
    engine = register_any.reg.engine
    alarms = [
        # In the last hour: the first SMS 0.8 s after arrival (1.8 s after the detector), e-mail later, a call failed.
        _alarm("a1", received=NOW - 100, raised=NOW - 101, acked_at=NOW - 60),
        # In the last day only: the first message 25 s after arrival, late.
        _alarm("a2", received=NOW - 7_200, raised=NOW - 7_200, cleared_at=NOW - 7_000),
        # A health alarm whose e-mail is 40 s overdue, still open.
        _alarm("a3", received=NOW - 50, raised=NOW - 55, urgent=False),
        # Older than a day: in no window.
        _alarm("a4", received=NOW - 90_000, raised=NOW - 90_000, acked_at=NOW - 89_000),
        # Just arrived, nothing sent yet and nothing overdue: open, in no latency histogram.
        _alarm("a5", received=NOW - 2, raised=NOW - 3),
    ]
    jobs = [
        _job("a1", 0, "sms", "sent", due=NOW - 100, sent_at=NOW - 99.2, provider_status="delivered"),
        _job("a1", 1, "email", "sent", due=NOW - 100, sent_at=NOW - 98.0, provider_status="250 queued as X7"),
        _job("a1", 2, "voice", "failed", due=NOW - 90),
        _job("a1", 3, "pigeon", "cancelled", due=NOW - 80),
        _job("a2", 0, "sms", "sent", due=NOW - 7_200, sent_at=NOW - 7_175, late=True, provider_status="undelivered"),
        _job("a3", 0, "email", "pending", due=NOW - 40),
        _job("a4", 0, "sms", "sent", due=NOW - 90_000, sent_at=NOW - 89_999),
        _job("a5", 0, "sms", "pending", due=NOW - 2),
    ]
    with engine.begin() as conn:
        conn.execute(insert(schema.alarms), alarms)
        conn.execute(insert(schema.notify_jobs), jobs)

    got = _samples(NotifyCollector(engine), now=NOW)
    h = "kotihub_register_alarm_notify_seconds"
    # The last hour: one urgent alarm, its first message 0.8 s after arrival and 1.8 s after the detector.
    assert _get(got, h + "_bucket", since="received", urgent="true", window="1h", le="0.5") == 0
    assert _get(got, h + "_bucket", since="received", urgent="true", window="1h", le="1.0") == 1
    assert _get(got, h + "_bucket", since="raised", urgent="true", window="1h", le="1.0") == 0
    assert _get(got, h + "_bucket", since="raised", urgent="true", window="1h", le="2.0") == 1
    assert _get(got, h + "_gcount", since="received", urgent="true", window="1h") == 1
    assert abs(_get(got, h + "_gsum", since="received", urgent="true", window="1h") - 0.8) < 1e-6
    # The last day adds the 25 s one; the alarm older than a day is in neither.
    assert _get(got, h + "_bucket", since="received", urgent="true", window="24h", le="20.0") == 1
    assert _get(got, h + "_bucket", since="received", urgent="true", window="24h", le="30.0") == 2
    assert _get(got, h + "_bucket", since="received", urgent="true", window="24h", le="+Inf") == 2
    assert _get(got, h + "_gcount", since="received", urgent="false", window="24h") == 0

    n = "kotihub_register_notifications"
    assert _get(got, n, channel="sms", state="sent", window="1h") == 1
    assert _get(got, n, channel="sms", state="sent", window="24h") == 2
    assert _get(got, n, channel="voice", state="failed", window="1h") == 1
    assert _get(got, n, channel="email", state="pending", window="1h") == 1
    assert _get(got, n, channel="other", state="cancelled", window="1h") == 1  # a channel it does not know
    assert _get(got, n + "_late", channel="sms", window="1h") == 0
    assert _get(got, n + "_late", channel="sms", window="24h") == 1
    d = n + "_delivery"
    assert _get(got, d, channel="sms", status="delivered", window="1h") == 1
    assert _get(got, d, channel="sms", status="undelivered", window="24h") == 1
    assert _get(got, d, channel="email", status="other", window="1h") == 1  # the provider's own text is not a label
    assert _get(got, n + "_overdue", channel="email") == 1
    assert _get(got, n + "_overdue", channel="sms") == 0  # a5's SMS is due 2 s ago: not overdue yet
    assert _get(got, "kotihub_register_alarms_open", urgent="false", window="1h") == 1
    assert _get(got, "kotihub_register_alarms_open", urgent="true", window="1h") == 1  # a5
    assert _get(got, "kotihub_register_alarms_open", urgent="true", window="24h") == 1
    # The exposition is valid Prometheus text, as a histogram with the gauge's count and sum beside it.
    registry = CollectorRegistry()
    registry.register(NotifyCollector(engine))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert families[h].type == "histogram"


def test_rollout_state_and_outcomes_only_for_started_rollouts(register_any: RunningRegister) -> None:
    reg = register_any.reg
    rollout.start(reg, "1.0.0", 100, actor="test", now=NOW - 100)
    rollout.start(reg, "1.1.0", 25, actor="test", now=NOW - 50)
    rollout.pause(reg, "1.1.0", actor="test")
    for i, outcome in enumerate(["confirmed", "confirmed", "rolled_back"]):
        rollout.record_outcome(reg, f"hub{i}", HOUSEHOLD, rel.Outcome(version="1.1.0", outcome=outcome))
    # A hub reporting a release nobody rolled out does not get a label of its own.
    rollout.record_outcome(reg, "hub9", HOUSEHOLD, rel.Outcome(version="9.9.9", outcome="refused"))

    got = _samples(RolloutCollector(reg.engine))
    assert _get(got, "kotihub_register_rollout_percent", version="1.1.0") == 25
    assert _get(got, "kotihub_register_rollout_state", version="1.1.0", state="paused") == 1
    assert _get(got, "kotihub_register_rollout_state", version="1.1.0", state="active") == 0
    assert _get(got, "kotihub_register_rollout_state", version="1.0.0", state="superseded") == 1
    assert _get(got, "kotihub_register_rollout_outcomes", version="1.1.0", outcome="confirmed") == 2
    assert _get(got, "kotihub_register_rollout_outcomes", version="1.1.0", outcome="rolled_back") == 1
    assert _get(got, "kotihub_register_rollout_outcomes", version="1.0.0", outcome="confirmed") == 0
    assert not any(dict(labels).get("version") == "9.9.9" for _, labels in got)

    # Only the newest few rollouts, however many were ever started.
    for minor in range(2, 2 + MAX_ROLLOUTS):
        rollout.start(reg, f"1.{minor}.0", 10, actor="test", now=NOW + minor)
    versions = {dict(labels)["version"] for _, labels in _samples(RolloutCollector(reg.engine))}
    assert versions == {f"1.{m}.0" for m in range(2, 2 + MAX_ROLLOUTS)}


def test_the_register_serves_them_at_metrics(register_any: RunningRegister) -> None:
    reg = register_any
    now = time.time()
    with reg.reg.engine.begin() as conn:
        conn.execute(insert(schema.alarms), [_alarm("b1", received=now - 30, raised=now - 31)])
        conn.execute(insert(schema.notify_jobs), [_job("b1", 0, "sms", "sent", due=now - 30, sent_at=now - 29.7)])
    rollout.start(reg.reg, "2.0.0", 5, actor="test")
    resp = bearer(reg, reg.api_token("support")).get(f"{reg.url}/metrics")
    assert resp.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    latency = {
        s.labels["le"]: s.value
        for s in families["kotihub_register_alarm_notify_seconds"].samples
        if s.name.endswith("_bucket")
        and s.labels["since"] == "received"
        and s.labels["window"] == "1h"
        and s.labels["urgent"] == "true"
    }
    assert (latency["0.5"], latency["1.0"]) == (1, 1)  # 0.3 s, well inside the first bucket
    percent = families["kotihub_register_rollout_percent"].samples
    assert [(s.labels["version"], s.value) for s in percent] == [("2.0.0", 5)]
    assert HOUSEHOLD not in resp.text  # no household in any label
