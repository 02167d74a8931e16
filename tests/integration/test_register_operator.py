"""Operators at the real register over TLS: every read they make is audited, command lists come in pages, and
command payloads are bounded."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from cloud_sync.register.errors import Invalid
from tests.integration.test_register import bearer, error_of
from tests.support.register import RunningRegister

READS = ["", "/members", "/consents", "/hubs", "/devices", "/readings", "/events", "/commands", "/clips", "/audit"]


@pytest.mark.parametrize("role", ["support", "admin"])
def test_every_operator_read_is_audited(register: RunningRegister, role: str) -> None:
    hub = register.enroll()
    h = hub.household_id
    register.add_member(h)
    token = register.api_token(role)
    principal = register.reg.principal(token)
    s = bearer(register, token)
    allowed = 0
    for path in [*READS, "/export"]:
        before = [a for a in register.reg.audit_entries(h, limit=10_000) if a["actor"] == principal.actor]
        r = s.get(f"{register.url}/v1/households/{h}{path}")
        after = [a for a in register.reg.audit_entries(h, limit=10_000) if a["actor"] == principal.actor]
        if r.status_code == 403:  # not this role's to read: nothing read, nothing to audit
            assert len(after) == len(before), path
            continue
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        allowed += 1
        assert len(after) == len(before) + 1, f"{role} read {path or '/'} without an audit row"
    assert allowed == (5 if role == "support" else 11)


def test_household_reads_of_its_own_data_are_not_operator_reads(register: RunningRegister) -> None:
    hub = register.enroll()
    h = hub.household_id
    token = register.api_token("household", h)
    actor = register.reg.principal(token).actor
    s = bearer(register, token)
    for path in READS:
        assert s.get(f"{register.url}/v1/households/{h}{path}").status_code == 200, path
    assert [a for a in register.reg.audit_entries(h) if a["actor"] == actor] == []


def test_command_lists_come_in_pages(register: RunningRegister) -> None:
    hub = register.enroll()
    h = hub.household_id
    ids = [register.queue_command(h, "restrict", {"category": "video", "on": bool(i % 2)})[0] for i in range(7)]
    s = bearer(register, register.api_token("household", h))
    url: str | None = f"{register.url}/v1/households/{h}/commands?limit=3"
    seen: list[str] = []
    pages = 0
    while url is not None:
        r = s.get(url)
        assert r.status_code == 200
        page = r.json()
        assert len(page) <= 3
        seen += [c["id"] for c in page]
        pages += 1
        nxt = r.links.get("next", {}).get("url")
        if nxt is not None:
            assert parse_qs(urlparse(nxt).query)["after"] == [page[-1]["id"]]
        url = nxt
    assert seen == ids and pages == 3
    default = s.get(f"{register.url}/v1/households/{h}/commands").json()
    assert [c["id"] for c in default] == ids  # 100 by default
    bad = s.get(f"{register.url}/v1/households/{h}/commands", params={"after": "cmd_nope"})
    assert bad.status_code == 422 and error_of(bad) == "bad_cursor"
    for limit in (0, 1001):
        assert s.get(f"{register.url}/v1/households/{h}/commands", params={"limit": limit}).status_code == 422
    # Another household's command is no cursor here.
    other = register.enroll()
    (foreign,) = register.queue_command(other.household_id, "restrict", {"category": "video", "on": True})
    r = s.get(f"{register.url}/v1/households/{h}/commands", params={"after": foreign})
    assert r.status_code == 422


def test_command_payloads_are_bounded(register: RunningRegister) -> None:
    hub = register.enroll()
    h = hub.household_id
    with pytest.raises(Invalid) as caught:
        register.queue_command(h, "restrict", {"category": "video", "note": "x" * 70_000})
    assert caught.value.code == "too_large"
    s = bearer(register, register.api_token("household", h))
    r = s.post(f"{register.url}/v1/households/{h}/commands", json={"kind": "restrict", "args": {"n": "x" * 70_000}})
    assert r.status_code == 413
    assert register.reg.commands(h) == []
