"""The signed member list end to end: a member's tools against the real register over TLS, the register's log and
relay, and a real daemon that an operator with the register's whole database cannot make encrypt to its key."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from sqlalchemy import delete, insert, select

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p
from cloud_sync.register import db, memberlog
from cloud_sync.register.auth import HubIdentity as RegHub
from cloud_sync.uplink import HubIdentity as UplinkIdentity
from gateway.cli import main as kotihub
from household import edit, keys
from kotihub_tools.broker import MosquittoBroker
from tests.integration.test_daemon import wait_until
from tests.integration.test_hub_register import SyncedHub
from tests.support.register import ACTOR, RunningRegister


def bearer(reg: RunningRegister, token: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def member_cli(reg: RunningRegister, household: str, token: str, key_dir: Path, *args: str) -> int:
    online = ["--register", reg.url, "--household", household, "--token", token, "--ca-file", str(reg.ca_file)]
    return kotihub(["member", args[0], "--keys", str(key_dir), *online, *args[1:]])


def test_a_member_creates_signs_rotates_removes_and_audits_with_the_cli(
    register: RunningRegister, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = register.create_household()
    token = register.api_token("household", h)
    aino, eero = tmp_path / "aino", tmp_path / "eero"
    assert kotihub(["member", "keygen", "--keys", str(aino), "--id", "m_aino"]) == 0
    assert kotihub(["member", "keygen", "--keys", str(eero), "--id", "m_eero"]) == 0
    capsys.readouterr()
    assert member_cli(register, h, token, aino, "init") == 0
    e = keys.load(eero)
    add = ["add", "--id", "m_eero", "--recipient", e.recipient, "--ed25519", e.ed25519]
    assert member_cli(register, h, token, aino, *add, "--expect-code", "AAAA-AAAA-AAAA-AAAA-AAAA") == 1
    assert "pairing code" in capsys.readouterr().err
    assert member_cli(register, h, token, aino, *add, "--expect-code", e.pairing_code) == 0
    assert member_cli(register, h, token, eero, "rotate") == 0
    assert keys.load(eero).ed25519 != e.ed25519  # the new key replaced the old one on the device
    assert not (tmp_path / "eero.next").exists()
    assert member_cli(register, h, token, eero, "remove", "m_aino") == 0
    # Aino is no longer a member: her device cannot sign any more.
    assert member_cli(register, h, token, aino, "remove", "m_eero") == 1
    assert "not a member" in capsys.readouterr().err
    assert member_cli(register, h, token, eero, "verify") == 0
    out = capsys.readouterr().out
    assert "ok: 4 version(s)" in out
    chain = ml.audit_chain([x.signed for x in memberlog.entries(register.reg, h)])
    assert [v.signed.signer for v in chain] == ["m_aino", "m_aino", "m_eero", "m_eero"]
    assert chain[-1].recipients == [keys.load(eero).recipient]
    # The register rewrites its history (version 4 gone): the member's device notices.
    with register.reg.engine.begin() as conn:
        conn.execute(delete(db.member_log).where(db.member_log.c.version == 4))
    assert member_cli(register, h, token, eero, "verify") == 1
    assert "rolled back or substituted" in capsys.readouterr().err


def test_the_register_api_appends_only_signed_next_versions(register_any: RunningRegister) -> None:
    register = register_any
    h = register.create_household()
    aino, eero, op = keys.generate("m_aino"), keys.generate("m_eero"), keys.generate("m_op")
    household = bearer(register, register.api_token("household", h))
    support = bearer(register, register.api_token("support"))
    admin = bearer(register, register.api_token("admin"))
    url = f"{register.url}/v1/households/{h}/member-log"
    genesis = edit.genesis(h, aino)
    assert admin.post(url, data=ml.encode_signed(genesis)).status_code == 403
    r = household.post(url, data=ml.encode_signed(genesis))
    assert r.status_code == 201, r.text
    entry = r.json()
    assert (entry["version"], entry["prev"]) == (1, "")
    v1 = ml.verify_genesis(genesis)
    # Signed by someone who is not a member: 422; the same number again: 409; skipping one: 409.
    forged = ml.sign(ml.make_body(h, 2, v1.digest, [aino.entry, op.entry]), "m_aino", op.signing)
    r = household.post(url, data=ml.encode_signed(forged))
    assert (r.status_code, r.json()["error"]) == (422, "member_list_bad_signature")
    assert household.post(url, data=ml.encode_signed(genesis)).json()["error"] == "member_list_stale"
    v2 = edit.add(v1, eero.entry, aino)
    skip = edit.add(ml.verify_next(v1, v2), op.entry, aino)
    assert household.post(url, data=ml.encode_signed(skip)).json()["error"] == "member_list_gap"
    other = edit.genesis("hh_other", aino)
    assert household.post(url, data=ml.encode_signed(other)).status_code == 409
    r = household.post(url, data=b'{"body": "x", "signer": "m_aino", "sig": "00"}')
    assert (r.status_code, r.json()["error"]) == (422, "invalid")
    assert household.post(url, data=b"\xff\xfe").status_code == 400
    assert household.post(url, data=ml.encode_signed(v2)).status_code == 201
    assert [e["version"] for e in support.get(url).json()] == [1, 2]
    assert [e["version"] for e in support.get(url, params={"after": 1}).json()] == [2]
    audit = register.reg.audit_entries(h)
    assert any(a["action"] == "member_log.read" and a["actor"].startswith("support") for a in audit)
    assert [a["target"] for a in audit if a["action"] == "member_list.append"] == ["2", "1"]
    # The operator may only propose; the household reads the proposals.
    req = {"member_id": "m_op", "recipient": op.recipient, "ed25519": op.ed25519, "note": "asennus"}
    reqs = f"{register.url}/v1/households/{h}/member-requests"
    assert household.post(reqs, json=req).status_code == 403
    assert support.post(reqs, json=req).status_code == 201
    assert [r["member_id"] for r in household.get(reqs).json()] == ["m_op"]
    assert len(memberlog.entries(register.reg, h)) == 2  # the request changed nothing
    paths = support.get(f"{register.url}/v1/openapi.json").json()["paths"]
    assert {"201", "409", "422"} <= set(paths["/v1/households/{h}/member-log"]["post"]["responses"])


def test_each_hub_is_sent_only_the_versions_it_lacks_in_bounded_commands(register_any: RunningRegister) -> None:
    register = register_any
    h = register.create_household()
    register.add_member(h, "Aino")
    hub = register.enroll(h)
    ident = RegHub(hub_id=hub.hub_id, household_id=h)
    aino = register.members[h][0]
    for i in range(40):  # a guest added and removed, 20 times
        latest = ml.audit_chain([e.signed for e in memberlog.entries(register.reg, h)])[-1]
        guest = keys.generate(f"m_guest{i // 2}")
        signed = edit.add(latest, guest.entry, aino) if i % 2 == 0 else edit.remove(latest, f"m_guest{i // 2}", aino)
        memberlog.append(register.reg, h, signed, actor=ACTOR)
    # The hub took version 1 at enrollment. One pending command with the next 16 of the 40 versions it lacks; the
    # next 16 follow when the hub reports progress.
    sent: list[int] = []
    while commands := register.reg.pending_commands(ident):
        (command,) = commands
        versions = [ml.open_signed(ml.decode_signed(msgspec.json.encode(v)))[0] for v in command.args["versions"]]
        assert len(versions) <= memberlog.MAX_VERSIONS_PER_COMMAND
        assert len(msgspec.json.encode(command.args)) < 16 * 1500  # two or three members: < 1.5 KB a version
        sent += [v.version for v in versions]
        done = p.CommandResult(status="done", detail={"version": versions[-1].version})
        register.reg.command_result(ident, command.id, done)
    assert sent == list(range(2, 42))
    # What the register keeps for these commands is a version number each; the versions are stored once, in the log.
    with register.reg.engine.connect() as conn:
        stored = [r.args for r in conn.execute(select(db.commands.c.args).where(db.commands.c.kind == "member_keys"))]
    assert len(stored) == 40 + 2  # one per change after the hub enrolled, and two follow-ups
    assert all(a in ({}, {"version": 17}, {"version": 33}, {"version": 41}) for a in stored), stored
    register.add_member(h, "Viimeinen")
    (command,) = register.reg.pending_commands(ident)
    assert len(command.args["versions"]) == 1
    # The hub refuses for a gap (it holds 38, say): the register resends from there at once.
    register.reg.command_result(
        ident, command.id, p.CommandResult(status="failed", detail={"reason": "gap", "version": 38})
    )
    (resent,) = register.reg.pending_commands(ident)
    assert len(resent.args["versions"]) == 4


@pytest.fixture
def paired_hub(
    tmp_path: Path, mosquitto: MosquittoBroker, register: RunningRegister
) -> Iterator[tuple[SyncedHub, str]]:
    household = register.create_household("Virtanen")
    register.add_member(household, "Aino")
    register.add_member(household, "Eero")
    hub = SyncedHub(tmp_path, mosquitto, register.url)
    code = register.pairing_code(household)
    assert code is not None
    token = register.enroll_token(household)
    ca = str(register.ca_file)
    wrong = hub.cli("provision", "--register", register.url, "--token", token, "--ca-file", ca, "--pairing-code",
                    "AAAA-AAAA-AAAA-AAAA-AAAA")  # fmt: skip
    assert wrong.returncode == 1
    assert "does not match the pairing code" in wrong.stderr
    assert not (hub.state / "hub.key").exists()  # nothing written
    token = register.enroll_token(household)
    ok = hub.cli("provision", "--register", register.url, "--token", token, "--ca-file", ca, "--pairing-code", code)
    assert ok.returncode == 0, ok.stderr
    hub.start()
    yield hub, household
    if hub.proc is not None and hub.proc.poll() is None:
        hub.stop(signal.SIGTERM)


def _results(register: RunningRegister, household: str) -> list[dict[str, Any]]:
    return [c for c in register.reg.commands(household) if c["kind"] == "member_keys" and c["status"] == "failed"]


def test_an_operator_with_the_database_cannot_choose_the_recipients(
    paired_hub: tuple[SyncedHub, str], register: RunningRegister
) -> None:
    hub, household = paired_hub
    genuine = [m.recipient for m in register.members[household]]
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 2, what="the hub's verified list")
    reg = register.reg
    hub_id = UplinkIdentity(hub.state).hub_id()
    operator = keys.generate("m_support")
    latest = memberlog.entries(reg, household)[-1]
    body, data = ml.open_signed(latest.signed)
    held = ml.Verified(latest.signed, body, data)

    def queue(*versions: ml.SignedList) -> None:
        """What a database writer can do: rows in the log, the directory and the command queue."""
        with reg.engine.begin() as conn:
            reg._queue(conn, household, "member_keys", {"versions": [msgspec.to_builtins(v) for v in versions]},
                       hub_id, ACTOR)  # fmt: skip

    # 1. A version 3 with the operator's key, chained correctly, signed with the operator's key in Aino's name,
    #    written straight into the log and the directory, and queued.
    forged = ml.sign(
        ml.make_body(household, 3, held.digest, [*body.members, operator.entry]), body.members[0].id, operator.signing
    )
    with reg.engine.begin() as conn:
        conn.execute(
            insert(db.member_log).values(
                household_id=household, version=3, digest=ml.body_digest(ml.open_signed(forged)[1]), prev=held.digest,
                signed=ml.encode_signed(forged).decode(), created_at=0.0,
            )
        )  # fmt: skip
        conn.execute(db.member_keys.update().values(recipient=operator.recipient))
    queue(forged)
    # 2. A whole new history from version 1, signed by the operator as the only member: another version 2 than
    #    the one the hub holds (a fork).
    fake = [edit.genesis(household, operator)]
    fake.append(edit.add(ml.verify_genesis(fake[0]), keys.generate("m_x").entry, operator))
    fake.append(edit.add(ml.audit_chain(fake)[-1], keys.generate("m_y").entry, operator))
    queue(*fake)
    # 3. A rollback to version 1 (Aino alone, validly signed once), to drop Eero.
    queue(ml.decode_signed(_row(reg, household, 1)))
    wait_until(lambda: len(_results(register, household)) == 3, timeout=30, what="three refusals reported")
    reasons = sorted(c["detail"]["reason"] for c in _results(register, household))
    assert reasons == ["forged", "fork", "rollback"]
    members = hub.cli_json("status")["members"]
    assert members["refused"] == {"forged": 1, "fork": 1, "rollback": 1}
    assert members["version"] == 2
    assert members["recipients"] == 2
    state = (hub.state / "member-list.json").read_text()
    assert operator.recipient not in state
    assert all(r in _decoded(state) for r in genuine)
    # The household's own next version still goes through (the operator's row removed from the log first).
    with reg.engine.begin() as conn:
        conn.execute(delete(db.member_log).where(db.member_log.c.version == 3))
    register.add_member(household, "Liisa")
    wait_until(lambda: hub.cli_json("status")["members"]["version"] == 3, timeout=30, what="the genuine version 3")
    assert hub.cli_json("status")["members"]["recipients"] == 3


def _row(reg: Any, household: str, version: int) -> str:
    with reg.engine.connect() as conn:
        return str(
            conn.execute(
                select(db.member_log.c.signed).where(
                    db.member_log.c.household_id == household, db.member_log.c.version == version
                )
            ).scalar_one()
        )


def _decoded(state: str) -> str:
    """The recipients inside the held version's base64 body."""
    held = json.loads(state)["held"]
    return ml.open_signed(msgspec.convert(held, ml.SignedList))[1].decode()


def test_an_erasure_leaves_the_hub_no_recipient_until_the_household_signs_again(
    paired_hub: tuple[SyncedHub, str], register: RunningRegister
) -> None:
    hub, household = paired_hub
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 2, what="the hub's verified list")
    register.queue_command(household, "erase", {"scope": "all"})
    wait_until(lambda: hub.cli_json("status")["members"]["erased"], timeout=60, what="the erasure")
    members = hub.cli_json("status")["members"]
    assert (members["recipients"], members["version"]) == (0, 2)
    assert "erased" in hub.cli("status").stdout  # the technician sees why no clip is recorded
    held = json.loads((hub.state / "member-list.json").read_text())
    assert held["erased"] is True
    # The household signs its list again (a new version); the hub encrypts to it from then on.
    register.add_member(household, "Liisa")
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 3, timeout=30, what="the new version")
    assert hub.cli_json("status")["members"]["erased"] is False
