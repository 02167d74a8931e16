"""The alarm's transaction in two round trips (cloud_sync/register/alarm_txn.py, docs/scale.md "Runs J") stores what
the Python path stores, keeps its promises, and stays at two round trips."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from cloud_sync import protocol as p
from cloud_sync.register import alarm_txn, db, ingest
from cloud_sync.register.errors import Forbidden
from cloud_sync.register.notify import schema
from cloud_sync.register.registry import Registry
from tests.support.alarm_home import DEVICES, AlarmHome, make_home, open_registry, smoke
from tests.support.pgtrips import RoundTrips


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    reg = open_registry(tmp_path / "register", postgres_url)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def home(registry: Registry) -> AlarmHome:
    return make_home(registry)


def test_a_smoke_alarm_is_two_round_trips_from_checkout_to_commit(home: AlarmHome) -> None:
    trips = RoundTrips(home.registry.urgent_engine)
    ack = home.send([smoke(0)], pipelined=False)
    python = trips.take()
    assert (ack.stored, ack.duplicates) == (1, 0)
    ack = home.send([smoke(1)])
    piped = trips.take()
    assert (ack.stored, ack.duplicates) == (1, 0)
    # The counter counts: the Python path waits for each statement (BEGIN ... COMMIT).
    assert python.round_trips >= 8, python
    assert piped.round_trips == 2, piped
    # A resend (nothing new stored, the alarm already open) costs the same.
    ack = home.send([smoke(1)])
    assert (ack.stored, ack.duplicates, trips.take().round_trips) == (0, 1, 2)


# ------------------------------------------------------------------------------------ the same as the Python path

T0 = 1_760_000_000.0  # 2025-10-09 08:53 UTC: daytime in Helsinki; T0 + 14 h is in the default quiet hours
_STATES = {
    "smoke": ("smoke", "clear", "fault", "tamper", "test", "battery_low", "end_of_life", "hush"),
    "availability": ("offline", "online", "unknown"),
    "contact": ("open",),
}
_DEVICE_IDS = (*(d.device_id for d in DEVICES), "z2m:not-registered")
_POLICIES: tuple[object, ...] = (
    None,
    {"restricted": ["test", "device_offline"]},
    {"quiet_start": "00:00", "quiet_end": "00:00", "health": ["email"], "offline_debounce_s": {"gateway": 60}},
    {"smoke": [{"after_s": 5, "channels": ["voice", "sms"], "in_order": True, "gap_s": 10, "repeat": 1}]},
    {"smoke": "not a list"},  # a stored policy that no longer validates: both paths fall back to the defaults
)

item_bodies = st.builds(
    lambda kind, state, dev, late, selftest: (kind, state, dev, late, selftest),
    st.sampled_from(sorted(_STATES)),
    st.integers(0, 7),
    st.sampled_from(_DEVICE_IDS),
    st.booleans(),
    st.booleans(),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[object, float, float, list[list[p.Item]]]:
    policy = draw(st.sampled_from(_POLICIES))
    clock = T0 + draw(st.sampled_from((0.0, 14 * 3600.0)))
    watermark = draw(st.sampled_from((0.0, clock - 50.0)))
    batches: list[list[p.Item]] = []
    seq = 0
    for _ in range(draw(st.integers(1, 3))):
        if batches and draw(st.booleans()):
            batches.append(draw(st.sampled_from(batches)))  # a resend, exactly as the outbox holds it
            continue
        items = []
        for kind, state, dev, late, selftest in draw(st.lists(item_bodies, min_size=1, max_size=4)):
            states = _STATES[kind]
            ts = clock - (100.0 if late else 1.0) + seq / 8
            attrs = {"selftest": True} if selftest else {}
            body = {"device_id": dev, "kind": kind, "state": states[state % len(states)], "ts": ts, "attrs": attrs}
            items.append(p.Item(seq=seq, ts=ts, body=body))
            seq += 1
        batches.append(items)
    return policy, clock, watermark, batches


def _reset(home: AlarmHome, policy: object, watermark: float) -> None:
    h = home.hub.household_id
    with home.registry.engine.begin() as conn:
        conn.execute(db.events.delete().where(db.events.c.hub_id == home.hub.hub_id))
        conn.execute(schema.alarms.delete().where(schema.alarms.c.household_id == h))
        conn.execute(schema.notify_jobs.delete().where(schema.notify_jobs.c.household_id == h))
        conn.execute(schema.escalation_policies.delete().where(schema.escalation_policies.c.household_id == h))
        if policy is not None:
            conn.execute(insert(schema.escalation_policies).values(household_id=h, policy=policy, updated_at=T0))
        conn.execute(db.households.update().where(db.households.c.id == h).values(erased_before=watermark))


def _stored(home: AlarmHome) -> dict[str, list[dict[str, Any]]]:
    h = home.hub.household_id
    with home.registry.engine.connect() as conn:
        return {
            name: [dict(r) for r in conn.execute(q).mappings()]
            for name, q in (
                ("events", db.events.select().where(db.events.c.hub_id == home.hub.hub_id).order_by("seq")),
                ("alarms", schema.alarms.select().where(schema.alarms.c.household_id == h).order_by("id")),
                ("jobs", schema.notify_jobs.select().where(schema.notify_jobs.c.household_id == h).order_by("id")),
            )
        }


def _item(seq: int, kind: str, state: str, dev: str, ts: float) -> p.Item:
    return p.Item(seq=seq, ts=ts, body={"device_id": dev, "kind": kind, "state": state, "ts": ts, "attrs": {}})


# Every branch at least once whatever hypothesis draws: a device offline and back (its pending jobs cancelled), a
# smoke alarm and its clear, a resend, and items from before the erasure watermark.
_OFFLINE_AND_BACK = [
    _item(0, "availability", "offline", "z2m:gateway", T0 - 20),
    _item(1, "smoke", "smoke", "z2m:smoke-hall", T0 - 10),
    _item(2, "smoke", "fault", "z2m:smoke-kitchen", T0 - 200),
]
_BACK = [_item(3, "availability", "online", "z2m:gateway", T0 - 5), _item(4, "smoke", "clear", "z2m:smoke-hall", T0)]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
@example(scenario=(None, T0, 0.0, [_OFFLINE_AND_BACK, _BACK, _OFFLINE_AND_BACK]))
@example(scenario=(_POLICIES[2], T0, T0 - 15, [_OFFLINE_AND_BACK, _BACK]))
def test_the_pipelined_path_stores_what_the_python_path_stores(
    home: AlarmHome, monkeypatch: pytest.MonkeyPatch, scenario: tuple[object, float, float, list[list[p.Item]]]
) -> None:
    policy, clock, watermark, batches = scenario
    monkeypatch.setattr(ingest, "time", SimpleNamespace(time=lambda: clock))  # received_at, for both paths alike
    outcome = {}
    for pipelined in (False, True):
        _reset(home, policy, watermark)
        acks = [home.send(items, pipelined=pipelined) for items in batches]
        outcome[pipelined] = (acks, _stored(home))
    assert outcome[True] == outcome[False]


# ------------------------------------------------------------------------------------------------- the promises


def _open_alarms(registry: Registry, household_id: str) -> int:
    with registry.engine.connect() as conn:
        q = select(func.count()).select_from(schema.alarms).where(schema.alarms.c.household_id == household_id)
        return int(conn.execute(q).scalar_one())


def test_the_dispatchers_are_woken_after_the_commit(home: AlarmHome, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def woken(_key: object) -> None:
        seen.append(_open_alarms(home.registry, home.hub.household_id))  # from another connection: committed?

    monkeypatch.setattr(ingest, "notify_dispatchers", woken)
    home.send([smoke(0)])
    assert seen == [1]
    home.send([smoke(0)])  # a resend opens nothing, so wakes nobody
    assert seen == [1]


def test_a_batch_cut_between_its_round_trips_stores_nothing_and_its_resend_opens_the_alarm_once(
    home: AlarmHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL drops the connection after the first round trip (event inserted, not committed): no ack, nothing
    kept; the hub's resend is stored, and its alarm opened, once."""
    plan = alarm_txn._plan
    killer = home.registry.engine

    def plan_then_drop(*args: Any) -> Any:
        with killer.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
            )
        return plan(*args)

    monkeypatch.setattr(alarm_txn, "_plan", plan_then_drop)
    with pytest.raises(DBAPIError):
        home.send([smoke(0), smoke(1, "z2m:smoke-kitchen")])
    assert ingest.items(home.registry, home.hub.hub_id, "alarm") == []
    assert _open_alarms(home.registry, home.hub.household_id) == 0
    monkeypatch.setattr(alarm_txn, "_plan", plan)
    ack = home.send([smoke(0), smoke(1, "z2m:smoke-kitchen")])
    assert (ack.acked_seq, ack.stored, ack.duplicates) == (1, 2, 0)
    assert home.send([smoke(0), smoke(1, "z2m:smoke-kitchen")]).duplicates == 2
    assert _open_alarms(home.registry, home.hub.household_id) == 2


def test_a_refused_hub_stores_nothing_and_gets_the_python_paths_refusal(home: AlarmHome) -> None:
    home.registry.revoke_hub(home.hub.hub_id, actor="test")
    trips = RoundTrips(home.registry.urgent_engine)
    with pytest.raises(Forbidden) as refused:
        home.send([smoke(0)])
    assert refused.value.code == "hub_revoked"
    assert ingest.items(home.registry, home.hub.hub_id, "alarm") == []
    assert _open_alarms(home.registry, home.hub.household_id) == 0
    # The pipeline (refused by its admission), its rollback, then the Python path's check: only refusals cost more.
    assert trips.take().round_trips > 2


def test_an_alarm_from_before_the_erasure_is_acked_and_not_stored(home: AlarmHome) -> None:
    now = time.time()
    with home.registry.engine.begin() as conn:
        conn.execute(db.households.update().values(erased_before=now))
    old, new = _item(0, "smoke", "smoke", "z2m:smoke-hall", now - 1), _item(1, "smoke", "smoke", "z2m:smoke-hall", now)
    ack = home.send([old, new])
    assert (ack.acked_seq, ack.stored, ack.duplicates) == (1, 1, 0)
    assert [seq for seq, _ in ingest.items(home.registry, home.hub.hub_id, "alarm")] == [1]
    assert _open_alarms(home.registry, home.hub.household_id) == 1


def test_one_alarm_sent_twice_at_once_is_stored_and_opened_once(home: AlarmHome) -> None:
    """What a hub's second try over a new connection can do (cloud_sync/uplink/alarmroute.py): the first, on a kept
    connection, is still in the register when the second arrives. Both are acknowledged; one stores the alarm and
    plans its jobs, the other finds it held."""
    barrier = threading.Barrier(2)
    acks: list[p.IngestAck] = []

    def send() -> None:
        barrier.wait(10)
        acks.append(home.send([smoke(0)]))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    seq = smoke(0).seq
    assert sorted((a.acked_seq, a.stored, a.duplicates) for a in acks) == [(seq, 0, 1), (seq, 1, 0)]
    assert _open_alarms(home.registry, home.hub.household_id) == 1
    with home.registry.engine.connect() as conn:
        jobs = schema.notify_jobs
        keys = select(jobs.c.alarm_id, jobs.c.step, jobs.c.channel, jobs.c.member_id).where(
            jobs.c.household_id == home.hub.household_id
        )
        rows = conn.execute(keys).all()
    assert rows and len(rows) == len(set(rows))  # each job planned once
