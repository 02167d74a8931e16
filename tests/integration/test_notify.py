"""A smoke alarm reaches a person: the real register (TLS), the Twilio simulator and a real SMTP server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller

from cloud_sync.register.notify import alarms, dispatch, schema
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from tests.support.notify import EMAILS, PHONES, Mailbox, household, notify_env, post_state, wait_for
from tests.support.register import RunningRegister


@pytest.fixture
def notifying(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    twilio_sim: TwilioSimulator,
    smtp_server: tuple[Controller, Mailbox],
) -> Iterator[tuple[RunningRegister, dispatch.Dispatcher]]:
    """A register on SQLite with its dispatcher, configured for the simulator and the SMTP server."""
    state = tmp_path / "register"
    state.mkdir()
    reg = RunningRegister(state)
    env = notify_env(reg.url, reg.ca_file, twilio_sim, smtp_server[0].port)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reg.start()
    twilio_sim.trust(str(reg.ca_file))
    disp, halt = dispatch.start(reg.reg, NotifyConfig.from_env(), poll_s=0.2)
    try:
        yield reg, disp
    finally:
        halt()
        reg.close()


def _jobs(reg: RunningRegister, alarm_id: str) -> list[dict[str, Any]]:
    with reg.reg.engine.connect() as conn:
        rows = conn.execute(
            schema.notify_jobs.select()
            .where(schema.notify_jobs.c.alarm_id == alarm_id)
            .order_by(schema.notify_jobs.c.due_at)
        ).mappings()
        return [dict(r) for r in rows]


def test_smoke_sms_and_email_then_calls_in_order_and_press_1_stops_everything(
    notifying: tuple[RunningRegister, dispatch.Dispatcher],
    twilio_sim: TwilioSimulator,
    smtp_server: tuple[Controller, Mailbox],
) -> None:
    reg, _ = notifying
    box = smtp_server[1]
    hub, members = household(reg)
    raised = time.time()
    post_state(reg.url, hub, 0, "smoke", ts=raised)
    alarm_id = f"{hub.hub_id}.alarm.0"

    # At once: an SMS to every member and an e-mail to every member.
    wait_for(lambda: len(twilio_sim.sms()) == 2 and len(box.messages) == 2, 10, "SMS and e-mail to both members")
    assert sorted(m.to for m in twilio_sim.sms()) == sorted(PHONES)
    assert sorted(str(m["To"]) for m in box.messages) == sorted(EMAILS)
    first = min(m.created for m in twilio_sim.sms())
    assert first - raised < 2.0, "the first SMS was accepted more than 2 s after the smoke"
    fi = next(m for m in twilio_sim.sms() if m.to == PHONES[0])
    en = next(m for m in twilio_sim.sms() if m.to == PHONES[1])
    # As little as it can: what and where, and the link.
    assert fi.body.startswith("Palovaroitin: olohuone. Kuittaa: https://"), fi.body
    assert en.body.startswith("Smoke alarm: olohuone. Acknowledge: https://"), en.body
    assert "Varoitin" not in fi.body and "Aino" not in fi.body

    # No acknowledgement: calls in the call order, Aino first, then Eero.
    wait_for(lambda: len(twilio_sim.calls()) == 2, 10, "two calls")
    calls = sorted(twilio_sim.calls(), key=lambda c: c.created)
    assert [c.to for c in calls] == list(PHONES)
    assert "<Gather" in calls[0].twiml and "Paina 1" in calls[0].twiml

    # Eero presses 1: everything left stops within a second.
    pressed = time.monotonic()
    r = twilio_sim.press(calls[1].sid, "1")
    assert r.status_code == 200 and "kuitattu" in r.text
    wait_for(lambda: all(j["state"] != "pending" for j in _jobs(reg, alarm_id)), 1.0, "escalation stopped")
    assert time.monotonic() - pressed < 1.0
    jobs = _jobs(reg, alarm_id)
    assert {j["state"] for j in jobs if j["step"] == 101 or j["channel"] == "desk"} == {"cancelled"}

    with reg.reg.engine.connect() as conn:
        history = alarms.history(conn, hub.household_id)
    assert len(history) == 1
    alarm = history[0]
    assert alarm["acked_by"] == f"member:{members[1]}" and alarm["ack_channel"] == "voice"
    told = [(n["channel"], n["member_id"]) for n in alarm["notifications"] if n["state"] == "sent"]
    assert sorted(told) == sorted(
        [
            ("sms", members[0]),
            ("sms", members[1]),
            ("email", members[0]),
            ("email", members[1]),
            ("voice", members[0]),
            ("voice", members[1]),
        ]
    )

    # Delivery status from the provider's signed status callbacks.
    def sms_statuses() -> set[str]:
        with reg.reg.engine.connect() as conn:
            notes = alarms.history(conn, hub.household_id)[0]["notifications"]
        return {n["provider_status"] for n in notes if n["channel"] == "sms"}

    wait_for(lambda: sms_statuses() == {"delivered"}, 5, "SMS delivery callbacks")
    # The hub is told to silence its sirens.
    pending = [c for c in reg.reg.commands(hub.household_id) if c["kind"] == "alarm_ack"]
    assert len(pending) == 1 and pending[0]["args"] == {"device_id": "mqtt:0x00158d0001a2b3c4"}

    # Aino's call, still ringing, is ended; Eero's (he pressed 1) ends by itself after the thanks.
    wait_for(lambda: calls[0].ended_by_api, 5, "Aino's call ended after the acknowledgement")
    assert not calls[1].ended_by_api
    # Nothing more was sent: the repeat round is cancelled in the database (asserted above), so no worker claims it.
    assert (len(twilio_sim.calls()), len(twilio_sim.sms())) == (2, 2)


def test_signed_link_acknowledges_on_post_only_and_forged_links_are_refused(
    notifying: tuple[RunningRegister, dispatch.Dispatcher], twilio_sim: TwilioSimulator
) -> None:
    reg, _ = notifying
    hub, members = household(reg)
    post_state(reg.url, hub, 0, "smoke")
    wait_for(lambda: len(twilio_sim.sms()) == 2, 10, "two SMS")
    link = next(m for m in twilio_sim.sms() if m.to == PHONES[0]).body.rsplit(" ", 1)[1]
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    # A link previewer's GET shows a button and acknowledges nothing.
    page = s.get(link, timeout=10)
    assert page.status_code == 200 and "<form method=post" in page.text
    with reg.reg.engine.connect() as conn:
        assert alarms.history(conn, hub.household_id)[0]["acked_at"] is None
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    bad = s.post(forged, timeout=10)
    assert bad.status_code == 403 and bad.json()["error"] == "link_invalid"
    ok = s.post(link, timeout=10)
    assert ok.status_code == 200 and "Kuitattu" in ok.text
    with reg.reg.engine.connect() as conn:
        alarm = alarms.history(conn, hub.household_id)[0]
    assert alarm["acked_by"] == f"member:{members[0]}" and alarm["ack_channel"] == "link"
    # A second press keeps the first acknowledgement.
    assert s.post(link, timeout=10).status_code == 200
    with reg.reg.engine.connect() as conn:
        assert alarms.history(conn, hub.household_id)[0]["acked_by"] == f"member:{members[0]}"


def test_api_ack_is_role_scoped_and_a_bad_callback_signature_is_refused(
    notifying: tuple[RunningRegister, dispatch.Dispatcher], twilio_sim: TwilioSimulator
) -> None:
    reg, _ = notifying
    hub, _ = household(reg)
    other, _ = household(reg)
    post_state(reg.url, hub, 0, "smoke")
    alarm_id = f"{hub.hub_id}.alarm.0"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    url = f"{reg.url}/v1/households/{hub.household_id}/alarms/{alarm_id}/ack"
    wrong = s.post(
        url, headers={"Authorization": f"Bearer {reg.api_token('household', other.household_id)}"}, timeout=10
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_household"
    missing = s.post(
        f"{reg.url}/v1/households/{hub.household_id}/alarms/nope/ack",
        headers={"Authorization": f"Bearer {reg.api_token('household', hub.household_id)}"},
        timeout=10,
    )
    assert missing.status_code == 404 and missing.json()["error"] == "no_alarm"
    # A forged provider callback (no valid signature) cannot acknowledge.
    forged = s.post(f"{reg.url}/v1/notify/twilio/gather?job={alarm_id}.100.x.voice", data={"Digits": "1"}, timeout=10)
    assert forged.status_code == 403 and forged.json()["error"] == "bad_signature"
    ok = s.post(url, headers={"Authorization": f"Bearer {reg.api_token('household', hub.household_id)}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["already"] is False
    audit = [a for a in reg.reg.audit_entries(hub.household_id) if a["action"] == "alarm.ack"]
    assert len(audit) == 1 and audit[0]["target"] == alarm_id


@pytest.mark.parametrize("callbacks", [True, False], ids=["callback", "lookup"])
def test_provider_5xx_is_retried_and_a_timeout_is_looked_up_not_resent(
    notifying: tuple[RunningRegister, dispatch.Dispatcher], twilio_sim: TwilioSimulator, callbacks: bool
) -> None:
    reg, disp = notifying
    twilio_sim.callbacks_enabled = callbacks
    hub, _ = household(reg, {"smoke": [{"after_s": 0, "channels": ["sms"]}], "desk_after_s": 600})
    # The first request stalls past the client's 1 s timeout (accepted, but the register never hears of it),
    # the next two are refused with 503.
    twilio_sim.stall_next(1, seconds=1.5)
    twilio_sim.fail_next(2, status=503)
    post_state(reg.url, hub, 0, "smoke")
    alarm_id = f"{hub.hub_id}.alarm.0"
    wait_for(lambda: all(j["state"] == "sent" for j in _jobs(reg, alarm_id) if j["channel"] == "sms"), 20, "both SMS")
    # Exactly one SMS per member reached the provider: none lost, none doubled.
    assert sorted(m.to for m in twilio_sim.sms()) == sorted(PHONES)
    refs = {j["provider_ref"] for j in _jobs(reg, alarm_id) if j["channel"] == "sms"}
    assert refs == {m.sid for m in twilio_sim.sms()}
    assert disp.counters["retried"] >= 1
    if callbacks:
        # The stalled request's status callback proved it was accepted before the retry came due.
        assert disp.counters["sent"] == 1
    else:
        # No callback: the retry asked Twilio first and found the accepted message.
        assert disp.counters["recovered"] == 1 and disp.counters["sent"] == 1
