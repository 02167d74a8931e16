"""Fixtures for notification tests: the Twilio simulator, a real SMTP server (aiosmtpd), and helpers that make a
household with contacts and a short escalation policy, and deliver smoke-detector states as a hub does."""

from __future__ import annotations

import email
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller

from cloud_sync import protocol as p
from cloud_sync.register.notify import contacts
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from tests.support.postgres import free_port
from tests.support.register import HubIdentity, RunningRegister

PHONES = ("+358401110001", "+358401110002")
EMAILS = ("aino@example.fi", "eero@example.fi")

FAST_POLICY: dict[str, Any] = {
    "smoke": [
        {"after_s": 0, "channels": ["sms", "email"]},
        {"after_s": 1, "channels": ["voice"], "in_order": True, "gap_s": 2, "repeat": 1, "repeat_every_s": 30},
    ],
    "desk_after_s": 600,
}


class Mailbox:
    """What the SMTP server accepted (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content)
        with self._lock:
            self.messages.append(msg)
        return "250 OK"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def twilio_sim() -> Iterator[TwilioSimulator]:
    sim = TwilioSimulator()
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, box
    finally:
        controller.stop()


def notify_env(register_url: str, ca: Path, sim: TwilioSimulator, smtp_port: int) -> dict[str, str]:
    return {
        **sim.env(),
        "KOTIHUB_REGISTER_PUBLIC_URL": register_url,
        "KOTIHUB_SMTP_HOST": "127.0.0.1",
        "KOTIHUB_SMTP_PORT": str(smtp_port),
        "KOTIHUB_SMTP_FROM": "halytys@kotihub.invalid",
        "KOTIHUB_NOTIFY_TIMEOUT_S": "1",
    }


def household(reg: RunningRegister, policy: dict[str, Any] | None = None) -> tuple[HubIdentity, list[str]]:
    """An enrolled hub in a new household with two members (contacts in call order) and ``policy``."""
    hub = reg.enroll()
    members = []
    for i, (name, phone, mail) in enumerate(zip(("Aino", "Eero"), PHONES, EMAILS, strict=True)):
        mid, _ = reg.add_member(hub.household_id, name)
        contacts.set_contact(
            reg.reg,
            hub.household_id,
            mid,
            contacts.Contact(phone=phone, email=mail, language="fi" if i == 0 else "en", call_order=i),
            actor="test",
        )
        members.append(mid)
    contacts.set_policy(reg.reg, hub.household_id, policy or FAST_POLICY, actor="test")
    s = hub.session()
    r = s.post(
        f"{reg.url}/v1/devices",
        json=[
            {"device_id": "mqtt:0x00158d0001a2b3c4", "kind": "smoke_detector", "name": "Varoitin", "room": "olohuone"}
        ],
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return hub, members


def post_state(reg_url: str, hub: HubIdentity, seq: int, state: str, ts: float | None = None) -> requests.Response:
    """The hub delivers a smoke-detector state on the alarm lane."""
    t = time.time() if ts is None else ts
    body = {"device_id": "mqtt:0x00158d0001a2b3c4", "kind": "smoke", "state": state, "ts": t, "attrs": {}}
    data = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="alarm", items=[p.Item(seq=seq, ts=t, body=body)]))
    r = hub.session().post(f"{reg_url}/v1/ingest/alarm", data=data, headers=dict(p.INGEST_HEADERS), timeout=30)
    assert r.status_code == 200, r.text
    return r


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``cond`` until truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
