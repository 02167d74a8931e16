"""The kotihub-register CLI against a real (SQLite) register state directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pyrage
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloud_sync.protocol import EnrollRequest
from cloud_sync.register import memberlog
from cloud_sync.register.auth import hash_token
from cloud_sync.register.cli import _parser, main
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings


def run(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--state", str(state), *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_household_member_tokens_and_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "reg"
    code, hid, _ = run(capsys, state, "household", "create", "Virtanen")
    assert code == 0
    assert hid.startswith("hh_")
    assert stat.S_IMODE((state / "ca.key").stat().st_mode) == 0o600
    code, out, _ = run(capsys, state, "--json", "household", "list")
    assert [h["id"] for h in json.loads(out)] == [hid]
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    # The operator can no longer add a recipient: at most propose one, which a member must sign.
    with pytest.raises(SystemExit):
        run(capsys, state, "member", "add", hid, "Aino", "--recipient", recipient)
    code, rid, _ = run(
        capsys, state, "member", "request", hid, "m_aino", "--recipient", recipient, "--ed25519", "ab" * 32
    )
    assert code == 0
    assert rid.startswith("mreq_")
    code, out, err = run(
        capsys, state, "member", "request", hid, "m_x", "--recipient", "age1short", "--ed25519", "ab" * 32
    )
    assert code == 2
    assert "recipient" in err
    code, out, _ = run(capsys, state, "--json", "member", "log", hid)
    assert json.loads(out) == []
    code, token, _ = run(capsys, state, "enroll-token", "--household", hid, "--ttl", "60")
    assert code == 0
    code, api, _ = run(capsys, state, "api-token", "--role", "support")
    assert code == 0
    code, _, err = run(capsys, state, "api-token", "--role", "household")
    assert code == 1
    assert "--household" in err
    code, _, err = run(capsys, state, "enroll-token", "--household", "hh_nope")
    assert code == 1
    assert "no household" in err
    reg = Registry(Settings(state_dir=state))
    try:
        # Tokens are stored hashed only, and resolve to the right principal.
        assert reg.principal(api).role == "support"
        dump = (state / "register.db").read_bytes()
        assert token.encode() not in dump
        assert api.encode() not in dump
        assert hash_token(api).encode() in dump
        assert reg.members(hid) == []
        assert [r.member_id for r in memberlog.requests(reg, hid)] == ["m_aino"]
    finally:
        reg.close()
    code, out, _ = run(capsys, state, "--json", "audit", "--household", hid)
    actions = [a["action"] for a in json.loads(out)]
    assert {"household.create", "member.request", "member_log.read", "enroll_token.create"} <= set(actions)
    assert all(a["actor"].startswith("cli:") for a in json.loads(out))


def test_erase_needs_confirmation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "reg"
    _, hid, _ = run(capsys, state, "household", "create", "Korhonen")
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    run(capsys, state, "member", "request", hid, "m_aino", "--recipient", recipient, "--ed25519", "cd" * 32)
    code, _, err = run(capsys, state, "household", "erase", hid)
    assert code == 2
    assert "--yes" in err
    code, out, _ = run(capsys, state, "--json", "household", "erase", hid, "--yes")
    assert code == 0
    assert json.loads(out)["member_requests"] == 1
    code, out, _ = run(capsys, state, "--json", "household", "show", hid)
    assert json.loads(out)["members"] == []
    code, out, _ = run(capsys, state, "--json", "retention")
    assert code == 0
    assert json.loads(out)["readings"] == 0


def test_export_to_file_and_options_after_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "reg"
    code, hid, _ = run(capsys, tmp_path / "unused", "household", "create", "Nieminen", "--state", str(state))
    assert code == 0
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    request = ["member", "request", hid, "m_aino", "--recipient", recipient, "--ed25519", "ef" * 32]
    assert main([*request, "--state", str(state)]) == 0
    capsys.readouterr()
    out = tmp_path / "export.ndjson"
    code, _, _ = run(capsys, state, "export", hid, "--out", str(out))
    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    types = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert types.count("household") == 1
    assert types.count("member_request") == 1
    assert "audit" in types
    assert not (tmp_path / "unused").exists()
    code, _, err = run(capsys, state, "export", "hh_nope")
    assert code == 1
    assert "no household" in err


def test_hub_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "reg"
    _, hid, _ = run(capsys, state, "household", "create", "Mäkinen")
    _, token, _ = run(capsys, state, "enroll-token", "--household", hid)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    reg = Registry(Settings(state_dir=state))
    try:
        hub_id = reg.enroll(
            EnrollRequest(token=token, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode())
        ).hub_id
    finally:
        reg.close()
    code, out, _ = run(capsys, state, "hub", "revoke", hub_id)
    assert code == 0
    assert hub_id in out
    code, out, _ = run(capsys, state, "--json", "household", "show", hid)
    assert [h["revoked"] for h in json.loads(out)["hubs"]] == [True]
    code, _, err = run(capsys, state, "hub", "revoke", "hub_nope")
    assert code == 1
    assert "no hub" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["household", "list"],
        ["household", "show", "hh_x"],
        ["audit"],
        ["export", "hh_x"],
        ["household", "erase", "hh_x", "--yes"],
        ["member", "request", "hh_x", "m_aino", "--recipient", "age1x", "--ed25519", "ab" * 32],
        ["hub", "revoke", "hub_x"],
        ["enroll-token", "--household", "hh_x"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_command_on_what_a_register_holds_sets_up_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A mistyped --state must not leave a new CA key and an empty database behind (only `serve`, `household
    create`, `api-token` and `retention` may start a register from nothing)."""
    state = tmp_path / "typo"
    code, out, err = run(capsys, state, *argv)
    assert code == 1
    assert f"no register in {state}" in err
    assert out == ""
    assert not state.exists()


def test_people_read_times_as_iso_dates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    state = tmp_path / "reg"
    _, hid, _ = run(capsys, state, "household", "create", "Virtanen")
    _, out, _ = run(capsys, state, "household", "list")
    assert re.fullmatch(rf"id={hid}  name=Virtanen  created_at=20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ  erased_before=-", out)
    _, out, _ = run(capsys, state, "audit")
    assert re.search(r"\bat=20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ", out)
    _, out, _ = run(capsys, state, "--json", "household", "list")
    assert isinstance(json.loads(out)[0]["created_at"], float)  # machines keep the number


def test_serve_writes_chunks_unless_told_not_to() -> None:
    """Chunk writing is on by default from this release (its predecessor reads and erases chunks, so a rollback to it
    loses sight of nothing); ``--no-readings-chunks`` turns it off, ``--readings-chunks`` is still accepted."""
    assert _parser().parse_args(["serve"]).readings_chunks is True
    assert _parser().parse_args(["serve", "--readings-chunks"]).readings_chunks is True
    assert _parser().parse_args(["serve", "--no-readings-chunks"]).readings_chunks is False
    assert Settings(state_dir=Path("/nonexistent")).readings_chunks is True
