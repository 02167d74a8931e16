"""Exactly-once notifications across crashes and concurrent registers: the register as a real process, SIGKILLed at
random points of an escalation (seeded), and two register processes dispatching from one database."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from cloud_sync.register.notify import schema
from cloud_sync.register.notify.twilio_sim import TwilioSimulator
from tests.support.notify import Mailbox, household, notify_env, post_state, wait_for
from tests.support.register import RunningRegister
from tests.support.register_proc import RegisterProcess

POLICY: dict[str, Any] = {
    "smoke": [
        {"after_s": 0, "channels": ["sms", "email"]},
        {"after_s": 1, "channels": ["voice"], "in_order": True, "gap_s": 1},
        {"after_s": 3, "channels": ["voice"], "in_order": True, "gap_s": 1},
    ],
    "desk_after_s": 5,
}
TERMINAL = {"sent", "failed", "cancelled", "skipped"}


@pytest.fixture
def admin() -> Iterator[list[Any]]:
    """Register processes to stop and direct database handles to close at the end, whatever happened."""
    holder: list[Any] = []
    yield holder
    for r in holder:
        if isinstance(r, RegisterProcess):
            r.kill()
        else:
            r.close()


def _admin_for(proc: RegisterProcess, holder: list[Any]) -> RunningRegister:
    """Direct database access for set-up and checks (never started: the register runs as a process)."""
    r = RunningRegister(proc.state, proc.db_url)
    r.port = proc.port
    holder.append(r)
    return r


def _jobs(reg: RunningRegister) -> list[dict[str, Any]]:
    with reg.reg.engine.connect() as conn:
        return [dict(r) for r in conn.execute(schema.notify_jobs.select()).mappings()]


def _all_done(reg: RunningRegister, n: int) -> bool:
    jobs = _jobs(reg)
    return len(jobs) == n and all(j["state"] in TERMINAL for j in jobs)


@pytest.mark.slow
def test_register_sigkilled_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, twilio_sim: TwilioSimulator, smtp_server: tuple[Controller, Mailbox], admin: Any
) -> None:
    rng = random.Random(16)
    state = tmp_path / "register"
    state.mkdir()
    twilio_sim.callbacks_enabled = False  # only the lookup can tell what was accepted before a crash
    proc = RegisterProcess(state, {})
    admin.append(proc)
    proc.env = notify_env(proc.url, state / "ca.crt", twilio_sim, smtp_server[0].port)
    proc.start()
    twilio_sim.trust(str(state / "ca.crt"))
    reg = _admin_for(proc, admin)
    hub, _ = household(reg, POLICY)

    # The worst instant first: Twilio accepts the first SMS, and the register dies before it hears the answer.
    accepted = threading.Event()
    twilio_sim.on_accept = lambda _acc: accepted.set()
    twilio_sim.stall_next(1, seconds=2.0)
    post_state(proc.url, hub, 0, "smoke")
    assert accepted.wait(10), "the first SMS never reached the simulator"
    proc.kill()
    twilio_sim.on_accept = None
    kills = 1
    proc.start()
    # Then at random points of the escalation (seeded): the crash points, not a synchronisation.
    for _ in range(3):
        time.sleep(rng.uniform(0.05, 1.2))
        proc.kill()
        kills += 1
        proc.start()

    expected_jobs = 2 * 2 + 2 * 2 + 1  # SMS+e-mail to both, two rounds of calls to both, the desk
    wait_for(lambda: _all_done(reg, expected_jobs), 60, "every step of the escalation to finish")
    jobs = _jobs(reg)
    assert {j["state"] for j in jobs} == {"sent"}, [(j["id"], j["state"], j["error"]) for j in jobs]

    # Nothing lost, nothing doubled at the provider that can be asked (Twilio).
    sms = collections.Counter(a.to for a in twilio_sim.sms())
    calls = collections.Counter(a.to for a in twilio_sim.calls())
    assert sorted(sms.values()) == [1, 1], sms
    assert sorted(calls.values()) == [2, 2], calls
    assert {j["provider_ref"] for j in jobs if j["channel"] in ("sms", "voice")} == {a.sid for a in twilio_sim.accepted}
    # SMTP cannot be asked: at most one duplicate per crash, and every one counted.
    ids = collections.Counter(smtp_server[1].message_ids())
    assert len(ids) == 2, ids
    duplicates = sum(n - 1 for n in ids.values())
    counted = sum(j["resends"] for j in jobs if j["channel"] == "email")
    assert duplicates <= counted <= kills
    proc.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_register_processes_send_each_step_once(
    tmp_path: Path,
    twilio_sim: TwilioSimulator,
    smtp_server: tuple[Controller, Mailbox],
    admin: Any,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    db_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    state = tmp_path / "register"
    state.mkdir()
    first = RegisterProcess(state, {}, db_url=db_url)
    admin.append(first)
    first.env = notify_env(first.url, state / "ca.crt", twilio_sim, smtp_server[0].port)
    first.start()
    second = RegisterProcess(state, first.env, db_url=db_url)
    admin.append(second)
    second.start()
    twilio_sim.trust(str(state / "ca.crt"))
    reg = _admin_for(first, admin)
    policy = {"smoke": [{"after_s": 0, "channels": ["sms", "email"]}], "desk_after_s": 3600}
    hubs = [household(reg, policy)[0] for _ in range(3)]
    # Alarms arrive at both processes; both dispatch from the one database.
    for i, hub in enumerate(hubs):
        for seq in range(3):
            post_state((first if (i + seq) % 2 else second).url, hub, 2 * seq, "smoke")
            post_state(first.url, hub, 2 * seq + 1, "clear")
    n_alarms = len(hubs) * 3
    try:
        wait_for(
            lambda: len(twilio_sim.sms()) >= 2 * n_alarms and len(smtp_server[1].messages) >= 2 * n_alarms,
            30,
            "every SMS and e-mail",
        )
    except AssertionError:
        print([(j["id"], j["state"], j["error"]) for j in _jobs(reg)], len(twilio_sim.sms()))
        raise
    wait_for(lambda: all(j["state"] != "sending" for j in _jobs(reg)), 10, "no step in flight")
    assert len(twilio_sim.sms()) == 2 * n_alarms
    assert len(smtp_server[1].messages) == 2 * n_alarms
    assert len(set(smtp_server[1].message_ids())) == 2 * n_alarms
    workers = {j["claimed_by"] for j in _jobs(reg) if j["channel"] == "sms"}
    assert all(w for w in workers)
    first.stop()
    second.stop()
