"""Health alerts, the alarm desk and the privacy of notification data, against the real register (no providers
needed: what is checked is what the register plans, keeps, shows and erases)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from cloud_sync import protocol as p
from cloud_sync.register import cli, export, retention
from cloud_sync.register.errors import Forbidden
from cloud_sync.register.notify import alarms, desk, schema
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.dispatch import Dispatcher
from tests.support.notify import household, post_state
from tests.support.register import HubIdentity, RunningRegister


def _jobs(reg: RunningRegister, household_id: str) -> list[dict[str, Any]]:
    with reg.reg.engine.connect() as conn:
        q = schema.notify_jobs.select().where(schema.notify_jobs.c.household_id == household_id)
        return [dict(r) for r in conn.execute(q).mappings()]


def _alarms(reg: RunningRegister, household_id: str) -> list[dict[str, Any]]:
    with reg.reg.engine.connect() as conn:
        return alarms.history(conn, household_id)


def _availability(reg: RunningRegister, hub: HubIdentity, seq: int, state: str) -> None:
    t = time.time()
    body = {"device_id": "mqtt:0x00158d0001a2b3c4", "kind": "availability", "state": state, "ts": t, "attrs": {}}
    data = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="events", items=[p.Item(seq=seq, ts=t, body=body)]))
    r = hub.session().post(f"{reg.url}/v1/ingest/events", data=data, headers=dict(p.INGEST_HEADERS), timeout=30)
    assert r.status_code == 200, r.text


HEALTH = {"quiet_start": "00:00", "quiet_end": "00:00", "restricted": ["test"]}


def test_detector_states_raise_health_alerts_and_a_restricted_category_raises_nothing(
    register: RunningRegister,
) -> None:
    hub, _ = household(register, HEALTH)
    post_state(register.url, hub, 0, "fault")
    post_state(register.url, hub, 1, "test")
    post_state(register.url, hub, 2, "battery_low")
    post_state(register.url, hub, 2, "battery_low")  # the hub resends: still one alarm
    cats = sorted(a["category"] for a in _alarms(register, hub.household_id))
    assert cats == ["battery_low", "detector_fault"]
    jobs = _jobs(register, hub.household_id)
    # Lower urgency: SMS and e-mail to each member, no calls, no desk.
    assert sorted({j["channel"] for j in jobs}) == ["email", "sms"]
    assert len(jobs) == 2 * 2 * 2


def test_a_flapping_device_pages_nobody_and_a_device_that_stays_offline_does(register: RunningRegister) -> None:
    hub, _ = household(register, HEALTH)
    _availability(register, hub, 0, "offline")
    _availability(register, hub, 1, "online")
    first = _alarms(register, hub.household_id)
    assert len(first) == 1 and first[0]["cleared_at"] is not None
    assert {j["state"] for j in _jobs(register, hub.household_id)} == {"cancelled"}
    before = time.time()
    _availability(register, hub, 2, "offline")
    pending = [j for j in _jobs(register, hub.household_id) if j["state"] == "pending"]
    # A smoke detector: told after 10 minutes offline, not before.
    assert pending and all(before + 600 - 1 <= j["due_at"] <= time.time() + 600 for j in pending)


def test_a_silent_hub_raises_one_alert_per_silence(register: RunningRegister) -> None:
    """Each hub against its own household's limit: silent an hour (limit 30 min), 1,000 s (limit 600 s), 1,000 s
    (limit 30 min), 200 s (under any limit a policy may set), or revoked. Read in one statement, whatever the fleet."""
    hubs = {
        "hour": (household(register, HEALTH)[0], 3600),
        "short limit": (household(register, {**HEALTH, "hub_silent_after_s": 600})[0], 1000),
        "within limit": (household(register, HEALTH)[0], 1000),
        "just heard": (household(register, {**HEALTH, "hub_silent_after_s": 300})[0], 200),
        "revoked": (household(register, HEALTH)[0], 3600),
    }
    table = schema.metadata.tables["hubs"]
    now = time.time()
    with register.reg.engine.begin() as conn:
        for name, (hub, silent_s) in hubs.items():
            values = {"last_seen": now - silent_s, "revoked": name == "revoked"}
            conn.execute(table.update().where(table.c.id == hub.hub_id).values(**values))
        reads: list[str] = []
        listen = (conn, "before_cursor_execute")

        def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                reads.append(statement)

        sa_event.listen(*listen, count)
        try:
            assert alarms.check_silent_hubs(conn, now) == 2
        finally:
            sa_event.remove(*listen, count)
        assert alarms.check_silent_hubs(conn, now) == 0  # once per silence
    read_from = [s.split("FROM", 1)[1].split()[0] for s in reads]
    # One read of the hubs with their policies; the rest is the two alerts' planning (devices, members): no read
    # per hub, nor a policy read per hub.
    assert read_from.count("hubs") == 1 and "escalation_policies" not in read_from, read_from
    for name, (hub, _silent_s) in hubs.items():
        expected = ["hub_silent"] if name in ("hour", "short limit") else []
        assert [a["category"] for a in _alarms(register, hub.household_id)] == expected, name


def test_desk_is_role_scoped_and_audited_and_cli_acknowledges(
    register: RunningRegister, capsys: pytest.CaptureFixture[str]
) -> None:
    hub, _ = household(register, {"desk_after_s": 0})
    post_state(register.url, hub, 0, "smoke")
    alarm_id = f"{hub.hub_id}.alarm.0"
    # The desk step comes due at once; a dispatcher with no providers still puts the alarm on the desk.
    d = Dispatcher(register.reg, NotifyConfig())
    try:
        assert d.run_once() >= 1
    finally:
        d.close()
    on_desk = desk.read(register.reg, "desk", role="support", actor="cli:s", limit=10)
    assert [a["id"] for a in on_desk] == [alarm_id]
    with pytest.raises(Forbidden):
        desk.read(register.reg, "history", role="support", actor="cli:s", household_id=hub.household_id)
    audit = [a for a in register.reg.audit_entries(hub.household_id) if a["action"] == "alarms.desk.read"]
    assert len(audit) == 1 and audit[0]["actor"] == "cli:s"

    args = ["--state", str(register.settings.state_dir), "--json"]
    assert cli.main(["alarms", "history", "--role", "admin", "--household", hub.household_id, *args]) == 0
    history = json.loads(capsys.readouterr().out)
    assert history[0]["id"] == alarm_id and history[0]["acked_at"] is None
    assert cli.main(["alarms", "ack", hub.household_id, alarm_id, *args]) == 0
    assert json.loads(capsys.readouterr().out)["already"] is False
    assert desk.read(register.reg, "desk", role="admin", actor="cli:a") == []
    assert cli.main(["contact", "set", hub.household_id, "m_nobody", "--phone", "+3584012345", *args]) == 1
    assert cli.main(["contact", "set", hub.household_id, "m_x", "--phone", "040 123", *args]) == 1
    assert "invalid contact" in capsys.readouterr().err


def test_contacts_and_notification_history_are_exported_erased_and_expire(
    register: RunningRegister, tmp_path: Path
) -> None:
    hub, _ = household(register)
    post_state(register.url, hub, 0, "smoke")
    kinds = [r["type"] for r in export.export_household(register.reg, hub.household_id, actor="test")]
    for kind in ("contact", "escalation_policy", "alarm", "notification"):
        assert kind in kinds, kind
    # Retention: a year later, the history is gone.
    summary = retention.purge_expired(register.reg, now=time.time() + 400 * 86_400)
    assert summary["alarms"] == 1 and summary["notify_jobs"] == 9
    post_state(register.url, hub, 1, "smoke")
    retention.erase_household(register.reg, hub.household_id, actor="test")
    with register.reg.engine.connect() as conn:
        for table in (schema.contacts, schema.alarms, schema.notify_jobs, schema.escalation_policies):
            n = conn.execute(table.select().where(table.c.household_id == hub.household_id)).all()
            assert n == [], table.name


def test_a_hub_reporting_storage_low_raises_a_storage_alert(register: RunningRegister) -> None:
    hub, _ = household(register, HEALTH)
    t = time.time()
    body = {"event": "storage_low", "free_bytes": 10_000_000, "total_bytes": 8_000_000_000}
    data = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="diagnostics", items=[p.Item(seq=0, ts=t, body=body)]))
    r = hub.session().post(
        f"{register.url}/v1/ingest/diagnostics", data=data, headers=dict(p.INGEST_HEADERS), timeout=30
    )
    assert r.status_code == 200, r.text
    assert [a["category"] for a in _alarms(register, hub.household_id)] == ["storage_full"]


def test_policy_and_contact_api_refuse_bad_values_with_the_field_named(register: RunningRegister) -> None:
    hub, members = household(register)
    s = hub.session()
    s.cert = None
    s.verify = str(register.ca_file)
    s.headers["Authorization"] = f"Bearer {register.api_token('household', hub.household_id)}"
    base = f"{register.url}/v1/households/{hub.household_id}"
    bad = s.put(f"{base}/escalation-policy", json={"quiet_start": "7 am"}, timeout=10)
    assert bad.status_code == 422 and "quiet_start" in bad.json()["detail"]
    ok = s.put(f"{base}/escalation-policy", json={"desk_after_s": 120}, timeout=10)
    assert ok.status_code == 200 and ok.json()["desk_after_s"] == 120 and ok.json()["quiet_end"] == "07:00"
    assert s.get(f"{base}/escalation-policy", timeout=10).json()["desk_after_s"] == 120
    bad = s.put(f"{base}/members/{members[0]}/contact", json={"phone": "040 123 4567"}, timeout=10)
    assert bad.status_code == 422 and "phone" in bad.json()["detail"]
    assert s.put(f"{base}/members/nobody/contact", json={"phone": "+358401234567"}, timeout=10).status_code == 404
    put = s.put(f"{base}/members/{members[0]}/contact", json={"phone": "+358409999999", "language": "en"}, timeout=10)
    assert put.status_code == 204
    listed = {c["member_id"]: c for c in s.get(f"{base}/contacts", timeout=10).json()}
    assert listed[members[0]]["phone"] == "+358409999999" and listed[members[0]]["language"] == "en"
    support = s.get(
        f"{base}/contacts", headers={"Authorization": f"Bearer {register.api_token('support')}"}, timeout=10
    )
    assert support.status_code == 200
    assert [a["action"] for a in register.reg.audit_entries(hub.household_id) if a["action"] == "contacts.read"]
    schema_doc = s.get(f"{register.url}/v1/openapi.json", timeout=10).json()
    paths = schema_doc["paths"]
    assert "422" in paths["/v1/households/{h}/escalation-policy"]["put"]["responses"]
    assert "Policy" in schema_doc["components"]["schemas"]


def test_a_low_battery_reading_raises_one_alert_per_device_a_week(register: RunningRegister) -> None:
    hub, _ = household(register, HEALTH)
    t = time.time()

    def reading(i: int, value: float, device: str = "mqtt:0x00158d0001a2b3c4") -> p.Item:
        return p.Item(seq=i, ts=t + i, body={"device_id": device, "quantity": "battery", "value": value, "ts": t + i})

    items = [reading(0, 80.0), reading(1, 12.0), reading(2, 11.0), reading(3, 10.0, "mqtt:0xother"), reading(4, 14.9)]
    data = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="readings", items=items))
    url = f"{register.url}/v1/ingest/readings"
    assert hub.session().post(url, data=data, headers=dict(p.INGEST_HEADERS), timeout=30).status_code == 200
    data = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="readings", items=[reading(5, 9.0)]))
    assert hub.session().post(url, data=data, headers=dict(p.INGEST_HEADERS), timeout=30).status_code == 200
    found = sorted((a["category"], a["device_id"]) for a in _alarms(register, hub.household_id))
    assert found == [("battery_low", "mqtt:0x00158d0001a2b3c4"), ("battery_low", "mqtt:0xother")]
