"""Staged rollout on the real register over TLS: cohorts by a stable hash of the hub id, a technician's pin or
hold, hubs' outcomes over mTLS, the automatic pause, precise 4xx for bad requests, and the operator's CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import event, insert, select

from cloud_sync import releases as rel
from cloud_sync.register import db, rollout
from cloud_sync.register.cli import main
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from tests.support.register import RunningRegister

OPERATOR = "test:operator"
T0 = 1_790_000_000.0


def test_cohorts_are_stable_and_widening_only_adds_hubs(register: RunningRegister) -> None:
    rng = random.Random(17)
    hubs = [f"hub_{rng.getrandbits(64):016x}" for _ in range(400)]
    assert [rollout.cohort(h) for h in hubs] == [rollout.cohort(h) for h in hubs]
    seen: set[str] = set()
    for percent in (0, 5, 25, 100):
        rollout.start(register.reg, "1.1.0", percent, actor=OPERATOR)
        now = {h for h in hubs if rollout.assignment(register.reg, h).version == "1.1.0"}
        assert seen <= now  # nobody updated is taken back out
        assert abs(len(now) - 4 * percent) <= max(12, percent)  # about percent% of 400
        seen = now
    assert seen == set(hubs)
    # A newer rollout replaces the older one for every hub it covers.
    rollout.start(register.reg, "1.2.0", 100, actor=OPERATOR)
    assert {rollout.assignment(register.reg, h).version for h in hubs} == {"1.2.0"}


def test_pin_and_hold_beat_the_rollout_and_are_audited(register: RunningRegister, tmp_path: Path) -> None:
    a, b = (register.enroll(state_dir=tmp_path / n) for n in ("a", "b"))
    rollout.start(register.reg, "1.1.0", 100, actor=OPERATOR)
    rollout.set_override(register.reg, a.hub_id, actor="tech:aino", pin="1.0.5", hold=False)
    rollout.set_override(register.reg, b.hub_id, actor="tech:aino", pin=None, hold=True)
    assert rollout.assignment(register.reg, a.hub_id) == rel.Assignment(version="1.0.5", reason="pin")
    assert rollout.assignment(register.reg, b.hub_id) == rel.Assignment(version=None, reason="hold")
    rollout.set_override(register.reg, b.hub_id, actor="tech:aino", pin=None, hold=False)
    assert rollout.assignment(register.reg, b.hub_id).version == "1.1.0"
    actions = [e["action"] for e in register.reg.audit_entries()]
    assert {"release.start", "release.pin", "release.hold", "release.follow"} <= set(actions)
    # Over mTLS the hub sees the same.
    got = a.session().get(f"{register.url}/v1/releases/assignment", timeout=10)
    assert got.status_code == 200
    assert msgspec.json.decode(got.content, type=rel.Assignment) == rel.Assignment(version="1.0.5", reason="pin")


def test_failures_past_the_threshold_pause_the_rollout(register: RunningRegister, tmp_path: Path) -> None:
    hubs = [register.enroll(state_dir=tmp_path / f"h{i}") for i in range(6)]
    rollout.start(register.reg, "1.1.0", 100, actor=OPERATOR, max_failure_rate=0.5, min_reports=4)
    outcomes = ["confirmed", "rolled_back", "confirmed", "rolled_back", "install_failed", "confirmed"]
    paused_after = None
    for i, (hub, outcome) in enumerate(zip(hubs, outcomes, strict=True)):
        body = msgspec.json.encode(rel.Outcome(version="1.1.0", outcome=outcome, detail="selftest FAIL: x"))  # type: ignore[arg-type]
        resp = hub.session().post(
            f"{register.url}/v1/releases/outcome", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert resp.status_code == 204, resp.text
        if paused_after is None and rollout.rollouts(register.reg)[0]["state"] == "paused":
            paused_after = i + 1
    # 2 of 4 is 50%, not above 50%; 3 of 5 is: paused at the fifth outcome, not before.
    assert paused_after == 5
    [r] = rollout.rollouts(register.reg)
    assert "3 of 5 hubs failed" in r["reason"]
    assert r["outcomes"] == {"confirmed": 3, "rolled_back": 2, "install_failed": 1}
    assert rollout.assignment(register.reg, hubs[0].hub_id) == rel.Assignment(version=None, reason="paused")
    assert any(e["action"] == "release.auto_pause" and e["actor"] == "register" for e in register.reg.audit_entries())
    # The operator resumes it (start again): hubs are assigned again.
    rollout.start(register.reg, "1.1.0", 100, actor=OPERATOR)
    assert rollout.assignment(register.reg, hubs[0].hub_id).version == "1.1.0"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/v1/releases/tuf/metadata/..%2F..%2Fca.key", "http_error"),  # no such route at all
        ("/v1/releases/tuf/metadata/root.json.bak", "no_release_file"),
        ("/v1/releases/tuf/targets/kotihub-1.0-x.tar", "no_release_file"),
        ("/v1/releases/tuf/metadata/timestamp.json", "no_release_file"),  # no repository yet
    ],
)
def test_release_files_are_only_what_the_patterns_allow(
    register: RunningRegister, tmp_path: Path, path: str, error: str
) -> None:
    hub = register.enroll(state_dir=tmp_path / "hub")
    resp = hub.session().get(register.url + path, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"] == error


def test_a_bad_outcome_gets_a_precise_4xx_and_changes_nothing(register: RunningRegister, tmp_path: Path) -> None:
    hub = register.enroll(state_dir=tmp_path / "hub")
    s = hub.session()
    url = f"{register.url}/v1/releases/outcome"
    h = {"Content-Type": "application/json"}
    assert s.post(url, data=b"{", headers=h, timeout=10).status_code == 400
    bad = s.post(url, data=b'{"version": "1.0; drop", "outcome": "confirmed"}', headers=h, timeout=10)
    assert bad.status_code == 422 and "version" in bad.json()["detail"]
    bad = s.post(url, data=b'{"version": "1.0", "outcome": "great"}', headers=h, timeout=10)
    assert bad.status_code == 422
    assert s.post(url, data=b"x" * 5000, headers=h, timeout=10).status_code == 413
    assert rollout.rollouts(register.reg) == []
    with register.reg.engine.begin() as conn:
        assert conn.execute(rollout.release_outcomes.select()).first() is None
    # Without a hub certificate: refused before anything is read.
    import requests

    anon = requests.get(f"{register.url}/v1/releases/assignment", verify=str(register.ca_file), timeout=10)
    assert anon.status_code == 401


def test_the_operator_cli_starts_pauses_pins_and_shows_hubs(
    register: RunningRegister, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = register.enroll(state_dir=tmp_path / "hub")
    state = str(register.settings.state_dir)

    def run(*args: str) -> tuple[int, str]:
        code = main(["--state", state, *args])
        out, err = capsys.readouterr()
        return code, out + err

    assert run("release", "start", "2.0.0", "--percent", "100")[0] == 0
    code, out = run("release", "hubs", "--json")
    [row] = [r for r in json.loads(out) if r["hub_id"] == hub.hub_id]
    assert (row["assigned"], row["why"]) == ("2.0.0", "rollout")
    assert run("release", "pin", hub.hub_id, "1.9.0")[0] == 0
    code, out = run("release", "hubs", "--json")
    assert [r["assigned"] for r in json.loads(out) if r["hub_id"] == hub.hub_id] == ["1.9.0"]
    assert run("release", "hold", hub.hub_id)[0] == 0
    assert run("release", "pause", "2.0.0")[0] == 0
    code, out = run("release", "list", "--json")
    assert [(r["version"], r["state"]) for r in json.loads(out)] == [("2.0.0", "paused")]
    code, out = run("release", "pin", "hub_nobody", "1.0")
    assert code == 1 and "no such hub" in out
    code, out = run("release", "start", "2.0.0-rc1", "--percent", "5")
    assert code == 1 and "not a release number" in out


def _fleet_of(reg: Registry, n: int, seed: int) -> list[str]:
    """``n`` hubs made in the register's tables directly (enrolling 300 would take minutes), with what
    ``release hubs`` reads mixed in at random: heartbeats, pins, holds, outcomes, a few revoked."""
    rng = random.Random(seed)
    hh = reg.create_household("koti", actor=OPERATOR)
    ids = [f"hub_{seed}_{rng.getrandbits(64):016x}" for _ in range(n)]
    hubs, health, overrides, outcomes = [], [], [], []
    for i, hub in enumerate(ids):
        hubs.append({"id": hub, "household_id": hh, "cert_sha256": "0" * 64, "enrolled_at": T0})
        hubs[-1]["revoked"] = rng.random() < 0.05
        if rng.random() < 0.7:
            health.append({"hub_id": hub, "household_id": hh, "received_at": T0, "uptime_s": 1.0, "body": {}})
            health[-1].update(version=rng.choice(["1.0.0", "1.1.0"]), drivers_down=0, store_bytes=1)
            health[-1].update(disk_free_bytes=1, disk_total_bytes=2)
        kind = rng.random()
        if kind < 0.25:  # a pin, or a hold
            pin = "1.0.5" if kind < 0.15 else None
            overrides.append({"hub_id": hub, "pin_version": pin, "hold": pin is None, "set_by": "t", "set_at": T0})
        if rng.random() < 0.3:
            outcome = rng.choice(["confirmed", "rolled_back"])
            outcomes.append({"hub_id": hub, "version": "1.1.0", "outcome": outcome, "at": T0 + i})
    with reg.engine.begin() as conn:
        for table, rows in (
            (db.hubs, hubs),
            (db.hub_health, health),
            (rollout.release_overrides, overrides),
            (rollout.release_outcomes, outcomes),
        ):
            if rows:
                conn.execute(insert(table), rows)
    return ids


def _one_by_one(reg: Registry, listed: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    """What the command showed before: each hub's assignment by a query of its own (the hub's own endpoint's)."""
    out = []
    for row in listed:
        a = rollout.assignment(reg, row["hub_id"])
        out.append((row["hub_id"], a.version, a.reason))
    return out


@pytest.mark.parametrize("paused", [False, True])
def test_release_hubs_takes_as_many_statements_for_300_hubs_as_for_3_and_shows_the_same(
    tmp_path: Path, paused: bool
) -> None:
    statements: dict[int, int] = {}
    for n in (3, 300):
        reg = Registry(Settings(state_dir=tmp_path / f"r{n}"))
        try:
            ids = _fleet_of(reg, n, seed=n)
            rollout.start(reg, "1.1.0", 30, actor=OPERATOR, now=T0)
            rollout.start(reg, "1.2.0", 60, actor=OPERATOR, now=T0 + 1)  # the newest: the one hubs follow
            if paused:
                rollout.pause(reg, "1.2.0", actor=OPERATOR)
            seen: list[str] = []

            def count(*a: Any, seen: list[str] = seen) -> None:
                seen.append(a[2])

            event.listen(reg.engine, "before_cursor_execute", count)
            try:
                listed = rollout.hubs(reg, actor=OPERATOR)
            finally:
                event.remove(reg.engine, "before_cursor_execute", count)
            statements[n] = len(seen)
            with reg.engine.connect() as conn:
                revoked = set(conn.execute(select(db.hubs.c.id).where(db.hubs.c.revoked)).scalars())
            assert [r["hub_id"] for r in listed] == sorted(set(ids) - revoked)
            assert [(r["hub_id"], r["assigned"], r["why"]) for r in listed] == _one_by_one(reg, listed)
            if n == 300:  # every rule was exercised
                rules = {"pin", "hold", "paused"} if paused else {"pin", "hold", "rollout", "none"}
                assert {r["why"] for r in listed} == rules
        finally:
            reg.close()
    assert statements[3] == statements[300] <= 5, statements
