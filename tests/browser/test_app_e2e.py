"""The household's app end to end in Chromium with a virtual passkey authenticator: a member enrols a device by a
one-time link, signs out and in with the passkey, sees a reading a simulated device sent through a real hub
(mosquitto -> daemon -> uplink -> register), and acknowledges a smoke alarm, which stops its escalation (the Twilio
simulator's count). On the way: session fixation refused, the link refused a second time, the cookie's flags, and
screenshots and axe-core checks of every page of this part of the app in Finnish and English."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from cloud_sync.register.notify import contacts, dispatch
from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from cloud_sync.register.webapp import session
from cloud_sync.uplink import HubIdentity
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import SimMessage, SimulatedHome, publish
from tests.integration.test_hub_register import SyncedHub
from tests.support.browser import add_authenticator, assert_accessible, screenshot
from tests.support.webapp import WebAppServer

PHONE = "+358401110001"
POLICY: dict[str, Any] = {
    # A text at once, a call much later: the call must never happen once the alarm is acknowledged.
    "smoke": [{"after_s": 0, "channels": ["sms"]}, {"after_s": 300, "channels": ["voice"]}],
    "health": [],
}
FIXED = "fixed-by-an-attacker-0123456789"


def poll(cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def send(broker: MosquittoBroker, messages: list[SimMessage]) -> None:
    async def run() -> None:
        async with aiomqtt.Client(broker.host, broker.port, identifier="kotihub-app-test") as client:
            await publish(client, messages)

    # Playwright's sync API holds an event loop in this thread; the MQTT client gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=30)


@pytest.fixture
def home(
    tmp_path: Path,
    webapp_server: WebAppServer,
    mosquitto: MosquittoBroker,
    twilio_sim: TwilioSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, str, SyncedHub, dispatch.Dispatcher]]:
    """A household with Aino (a phone for alarms, a quick policy), its hub running and synced with the register,
    and the notification dispatcher on the Twilio simulator: ``(household, member, hub, dispatcher)``."""
    reg = webapp_server.register
    h = webapp_server.household("Virtanen")
    aino = webapp_server.member(h, "Aino")
    contacts.set_contact(reg.reg, h, aino, contacts.Contact(phone=PHONE), actor="test")
    contacts.set_policy(reg.reg, h, POLICY, actor="test")
    for k, v in {**twilio_sim.env(), "KOTIHUB_REGISTER_PUBLIC_URL": webapp_server.url}.items():
        monkeypatch.setenv(k, v)
    twilio_sim.trust(str(reg.ca_file))
    disp, halt = dispatch.start(reg.reg, NotifyConfig.from_env(), poll_s=0.2)
    (tmp_path / "hub").mkdir()
    hub = SyncedHub(tmp_path / "hub", mosquitto, reg.url)
    code = reg.pairing_code(h)
    assert code is not None
    done = hub.cli(
        "provision", "--register", reg.url, "--token", reg.enroll_token(h), "--ca-file", str(reg.ca_file),
        "--pairing-code", code,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hub.start()
    try:
        yield h, aino, hub, disp
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.stop(signal.SIGTERM)
        halt()


def both_languages(page: Page, name: str) -> None:
    """Screenshots and axe-core on the page in Finnish and in English (switched with the page's own link), back in
    Finnish after."""
    for lang, label in (("fi", "Suomeksi"), ("en", "In English")):
        page.get_by_role("link", name=label).click()
        expect(page.locator("html")).to_have_attribute("lang", lang)
        screenshot(page, name, lang)
        assert_accessible(page)
    page.get_by_role("link", name="Suomeksi").click()
    expect(page.locator("html")).to_have_attribute("lang", "fi")


def test_enrol_sign_in_see_a_reading_and_acknowledge_an_alarm(
    webapp_server: WebAppServer,
    home: tuple[str, str, SyncedHub, dispatch.Dispatcher],
    mosquitto: MosquittoBroker,
    twilio_sim: TwilioSimulator,
    page: Page,
) -> None:
    h, aino, hub, disp = home
    auth = add_authenticator(page)
    base = webapp_server.url
    # An attacker who planted a session id in the browser before sign-in gains nothing by it.
    page.context.add_cookies(
        [{"name": session.COOKIE, "value": FIXED, "domain": "localhost", "path": "/app", "secure": True}]
    )

    link = webapp_server.signin_link(aino)
    page.goto(link)
    expect(page.get_by_role("heading", name="Ota laite käyttöön")).to_be_visible()
    both_languages(page, "enrol")
    page.get_by_role("button", name="Luo pääsyavain").click()
    expect(page).to_have_url(f"{base}/app/home")
    assert len(auth.credentials()) == 1
    [cookie] = [c for c in page.context.cookies() if c["name"] == session.COOKIE]
    assert cookie["value"] != FIXED
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (True, True, "Strict", "/app")
    with webapp_server.client() as c:
        c.cookies.set(session.COOKIE, FIXED)
        assert c.get("/app/home").status_code == 303

    # The link worked once.
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("vanhentunut tai jo käytetty")

    page.goto(f"{base}/app/home")
    page.get_by_role("button", name="Kirjaudu ulos").click()
    expect(page).to_have_url(re.compile(r"/app/signin"))
    assert page.goto(f"{base}/app/home").url.endswith("/app/signin")  # signed out on the server too
    both_languages(page, "signin")
    page.get_by_role("button", name="Kirjaudu pääsyavaimella").click()
    expect(page).to_have_url(f"{base}/app/home")
    assert [c["value"] for c in page.context.cookies() if c["name"] == session.COOKIE] != [cookie["value"]]

    # A simulated device reports; the hub syncs it; Home shows it.
    sim = SimulatedHome(0)
    send(mosquitto, sim.announce() + sim.tick())

    def temperature_shown() -> bool:
        page.reload()
        return page.locator("[data-quantity=temperature]").count() > 0

    poll(temperature_shown, "a temperature reading on Home")
    expect(page.locator("[data-hub] .status-online")).to_have_text("Yhteydessä")

    # Smoke: the first step texts Aino; Home shows the alarm; she acknowledges it there.
    send(mosquitto, [sim.smoke("smoke")])
    poll(lambda: twilio_sim.sms(), "the alarm's first text message")

    def alarm_shown() -> bool:
        page.reload()
        return page.locator("#open-alarms [data-alarm]").count() > 0

    poll(alarm_shown, "the alarm on Home")
    both_languages(page, "home")
    page.goto(f"{base}/app/alarms")
    expect(page.locator("[data-state=open]")).to_have_count(1)
    both_languages(page, "alarms")
    page.goto(f"{base}/app/home")
    page.locator("#open-alarms").get_by_role("button", name="Kuittaa").click()
    expect(page.locator("#open-alarms")).to_have_text("Ei avoimia hälytyksiä.")

    a, j = notify_schema.alarms.c, notify_schema.notify_jobs.c
    with webapp_server.register.reg.engine.connect() as conn:
        alarm = conn.execute(select(notify_schema.alarms).where(a.household_id == h)).mappings().one()
        jobs = conn.execute(select(j.step, j.channel, j.state).where(j.alarm_id == alarm["id"])).all()
    assert (alarm["acked_by"], alarm["ack_channel"]) == (f"member:{aino}", "app")
    assert [(ch, st) for step, ch, st in jobs if step == 0] == [("sms", "sent")]
    later = [(ch, st) for step, ch, st in jobs if step > 0]
    assert ("voice", "cancelled") in later and all(st == "cancelled" for _, st in later)
    # Escalation has stopped: past the call's due time nothing more is sent.
    disp.run_once(now=time.time() + 600)
    assert twilio_sim.calls() == [] and len(twilio_sim.sms()) == 1
    audit = webapp_server.register.reg.audit_entries(h)
    assert {"app.link.use", "app.passkey.add", "app.signin", "app.signout", "alarm.ack"} <= {
        e["action"] for e in audit if e["actor"] == f"member:{aino}"
    }
    assert HubIdentity(hub.state).hub_id()  # the hub that delivered it is still enrolled
