"""Member-list command payloads (issue 13: "300 member additions made 5.7 MB of commands (quadratic)").

A household with two hubs — one online that acknowledges each ``member_keys`` command, one offline throughout —
goes through N changes of its member list (default 300: it grows to 30 members, the member cap is 32, then one
member is removed or added at a time). Prints, for the signed member list (each change a signed version appended
to the register's log and relayed as the versions each hub lacks):

* the bytes the register stores for them: command payloads, plus (ours) the signed log itself,
* the bytes the offline hub is sent when it comes back (all of it, in as many polls as it takes), and the largest
  single command,
* the time the register spends per change (signing on the member's side not included),

beside the baseline measured in the same run on a second register: the previous scheme, where each change queued
the whole list (ids, names and keys) to every hub. Run: ``.venv/bin/python bench/member_commands.py [--changes N]``.
Not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p
from cloud_sync.register import db, memberlog
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from household import edit
from household.keys import MemberKeys

ACTOR = "bench"


def enrolled_hub(reg: Registry, household: str, n: int) -> HubIdentity:
    hub_id = f"hub_bench{n}"
    with reg.engine.begin() as conn:
        conn.execute(
            db.hubs.insert().values(
                id=hub_id, household_id=household, name="", cert_sha256="0" * 64, enrolled_at=0.0, revoked=False
            )
        )
    return HubIdentity(hub_id=hub_id, household_id=household)


def plan(changes: int, rng: random.Random) -> list[tuple[str, int]]:
    """("add"|"remove", member number) steps: grow to 30 members, then churn one at a time."""
    steps: list[tuple[str, int]] = []
    present = [0]
    nxt = 1
    while len(steps) < changes:
        if len(present) < 30 or (len(present) < ml.MAX_MEMBERS and rng.random() < 0.5):
            steps.append(("add", nxt))
            present.append(nxt)
            nxt += 1
        else:
            victim = rng.choice(present[1:])
            present.remove(victim)
            steps.append(("remove", victim))
    return steps


def member(n: int) -> MemberKeys:
    return MemberKeys(f"m_{n:04}", pyrage.x25519.Identity.generate(), Ed25519PrivateKey.generate())


def stored_bytes(reg: Registry) -> int:
    with reg.engine.connect() as conn:
        rows = conn.execute(select(db.commands.c.args).where(db.commands.c.kind == "member_keys"))
        return sum(len(msgspec.json.encode(r.args)) for r in rows)


def log_bytes(reg: Registry) -> int:
    with reg.engine.connect() as conn:
        return sum(len(r.signed) for r in conn.execute(select(db.member_log.c.signed)))


def catch_up(reg: Registry, hub: HubIdentity, report: bool) -> tuple[int, int]:
    """The offline hub comes back: polls and reports until nothing is pending; (bytes sent, largest command)."""
    total = largest = 0
    while commands := reg.pending_commands(hub):
        for command in commands:
            size = len(msgspec.json.encode(command.args))
            total, largest = total + size, max(largest, size)
            detail: dict[str, Any] = {}
            if report:
                last = command.args["versions"][-1]
                detail["version"] = ml.open_signed(msgspec.convert(last, ml.SignedList))[0].version
            reg.command_result(hub, command.id, p.CommandResult(status="done", detail=detail))
    return total, largest


def run_signed(root: Path, steps: list[tuple[str, int]], keys: dict[int, MemberKeys]) -> dict[str, float]:
    reg = Registry(Settings(state_dir=root))
    h = reg.create_household("bench", actor=ACTOR)
    memberlog.append(reg, h, edit.genesis(h, keys[0]), actor=ACTOR)
    online, offline = enrolled_hub(reg, h, 1), enrolled_hub(reg, h, 2)
    latest = ml.verify_genesis(memberlog.entries(reg, h)[-1].signed)
    spent = 0.0
    for action, n in steps:
        signed = (
            edit.add(latest, keys[n].entry, keys[0])
            if action == "add"
            else edit.remove(latest, keys[n].member_id, keys[0])
        )
        latest = ml.verify_next(latest, signed)
        t0 = time.perf_counter()
        memberlog.append(reg, h, signed, actor=ACTOR)
        spent += time.perf_counter() - t0
        for command in reg.pending_commands(online):
            reg.command_result(online, command.id, p.CommandResult(status="done", detail={"version": latest.version}))
    stored = stored_bytes(reg) + log_bytes(reg)
    sent, largest = catch_up(reg, offline, report=True)
    out = {"stored": stored, "offline": sent, "largest": largest, "append_ms": 1000 * spent / len(steps)}
    reg.close()
    return out


def run_baseline(root: Path, steps: list[tuple[str, int]], keys: dict[int, MemberKeys]) -> dict[str, float]:
    """The previous scheme: every change queues the whole list, with names, to every hub."""
    reg = Registry(Settings(state_dir=root))
    h = reg.create_household("bench", actor=ACTOR)
    online, offline = enrolled_hub(reg, h, 1), enrolled_hub(reg, h, 2)
    present = [0]
    spent = 0.0
    for action, n in steps:
        present = [*present, n] if action == "add" else [m for m in present if m != n]
        full: list[dict[str, Any]] = [
            {"member_id": keys[m].member_id, "name": f"Jäsen {m}", "recipient": keys[m].recipient} for m in present
        ]
        t0 = time.perf_counter()
        with reg.engine.begin() as conn:
            reg._queue(conn, h, "member_keys", {"member_keys": full}, None, ACTOR)
        spent += time.perf_counter() - t0
        for command in reg.pending_commands(online):
            reg.command_result(online, command.id, p.CommandResult(status="done"))
    stored = stored_bytes(reg)
    sent, largest = catch_up(reg, offline, report=False)
    out = {"stored": stored, "offline": sent, "largest": largest, "append_ms": 1000 * spent / len(steps)}
    reg.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--changes", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(13)
    steps = plan(args.changes, rng)
    keys = {n: member(n) for n in {0, *(n for _, n in steps)}}
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_signed(Path(tmp) / "signed", steps, keys)
        base = run_baseline(Path(tmp) / "baseline", steps, keys)
    print(f"{args.changes} member-list changes, 2 hubs (one offline throughout), members capped at {ml.MAX_MEMBERS}")
    print(f"{'':34}{'signed log':>14}{'baseline':>14}{'ratio':>9}")
    # Ours also pays for what the baseline lacked: a signature per version, base64 of the exact signed bytes.
    for key, label in (
        ("stored", "stored: commands (+ log) (bytes)"),
        ("offline", "sent to the offline hub (bytes)"),
        ("largest", "largest command (bytes)"),
        ("append_ms", "time per change (ms)"),
    ):
        print(f"{label:34}{ours[key]:>14,.1f}{base[key]:>14,.1f}{ours[key] / base[key]:>9.3f}")


if __name__ == "__main__":
    main()
