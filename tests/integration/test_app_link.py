"""``kotihub-register app-link``: a one-time enrol link printed for a technician, or sent by SMS through the
notification provider (the Twilio simulator); either one opens the app's enrol page, and only its hash is kept."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from cloud_sync.register.cli import main
from cloud_sync.register.notify import contacts
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from cloud_sync.register.webapp import schema
from tests.support.webapp import WebAppServer


def test_app_link_printed_and_sent_by_sms_open_the_enrol_page(
    webapp_server: WebAppServer,
    twilio_sim: TwilioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = webapp_server.register
    h = webapp_server.household()
    m = webapp_server.member(h)
    contacts.set_contact(reg.reg, h, m, contacts.Contact(phone="+358401110001"), actor="test")
    monkeypatch.setenv("KOTIHUB_REGISTER_PUBLIC_URL", webapp_server.url)
    for k, v in twilio_sim.env().items():
        monkeypatch.setenv(k, v)
    state = ["--state", str(reg.settings.state_dir)]

    assert main([*state, "app-link", "--member", m]) == 0
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(re.escape(webapp_server.url) + r"/app/enrol/[A-Za-z0-9_-]{43}", printed)

    assert main([*state, "app-link", "--member", m, "--send", "sms", "--ttl", "300"]) == 0
    assert "sent" in capsys.readouterr().out
    [sms] = twilio_sim.sms()
    assert sms.to == "+358401110001"
    sent = re.findall(r"https://\S+", sms.body)
    assert len(set(sent)) == 1 and sent[0] != printed

    with webapp_server.client() as c:
        for link in (printed, sent[0]):
            page = c.get(link.removeprefix(webapp_server.url))
            assert page.status_code == 200 and 'id="enrol"' in page.text
    with reg.reg.engine.connect() as conn:
        stored = set(conn.execute(select(schema.signin_links.c.token_hash)).scalars())
    assert len(stored) == 2 and not any(link.rsplit("/", 1)[1] in stored for link in (printed, sent[0]))

    # A member without that address: a clear error, nothing sent.
    assert main([*state, "app-link", "--member", m, "--send", "email"]) == 1
    assert "no email provider" in capsys.readouterr().err
    assert main([*state, "app-link", "--member", "m_nobody"]) == 1
    assert len(twilio_sim.sms()) == 1
