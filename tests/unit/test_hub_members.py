"""The hub's verified member list: pinned at installation, extended only by a member's signature, refusals counted,
nothing but keys on disk (0600), erasure leaves no recipient."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml
from gateway.members import STATE_FILE, HubMembers, MemberListRefused
from household import edit, keys


class Household:
    """A household of members with keys, signing versions as their devices would."""

    def __init__(self, n: int = 2) -> None:
        self.members = [keys.generate(f"m_{i}") for i in range(n)]
        self.versions = [edit.genesis("hh_1", self.members[0])]
        for m in self.members[1:]:
            self.versions.append(edit.add(self.latest, m.entry, self.members[0]))

    @property
    def latest(self) -> ml.Verified:
        return ml.audit_chain(self.versions)[-1]

    def sign(self, signed: ml.SignedList) -> ml.SignedList:
        self.versions.append(signed)
        return signed


def args(*versions: ml.SignedList) -> dict[str, object]:
    return {"versions": [msgspec.to_builtins(v) for v in versions]}


@pytest.fixture
def household() -> Household:
    return Household()


def pinned(tmp_path: Path, household: Household) -> HubMembers:
    hub = HubMembers(tmp_path)
    hub.pin(household.members[0].pairing_code, household.versions)
    return hub


def test_pinning_anchors_the_list_and_keeps_only_keys_0600(tmp_path: Path, household: Household) -> None:
    (tmp_path / "members.json").write_text('[{"name": "Aino Virtanen"}]')  # left by an earlier version
    hub = pinned(tmp_path, household)
    assert hub.recipients == [m.recipient for m in household.members]
    path = tmp_path / STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"Virtanen" not in path.read_bytes()
    again = HubMembers(tmp_path)  # after a restart
    assert again.recipients == hub.recipients
    assert again.version == 2
    assert not (tmp_path / "members.json").exists()


def test_a_list_not_signed_by_the_pinned_member_is_refused_at_installation(
    tmp_path: Path, household: Household
) -> None:
    stranger = keys.generate("m_op")
    with pytest.raises(ml.Forged):
        HubMembers(tmp_path).pin(stranger.pairing_code, household.versions)
    assert not (tmp_path / STATE_FILE).exists()


def test_next_versions_add_rotate_and_remove(tmp_path: Path, household: Household) -> None:
    hub = pinned(tmp_path, household)
    aino, eero = household.members
    new_eero = keys.generate("m_1")
    assert hub.apply_command(args(household.sign(edit.rotate(household.latest, eero, new_eero)))) == {
        "version": 3,
        "changed": True,
        "members": 2,
    }
    assert new_eero.recipient in hub.recipients
    assert eero.recipient not in hub.recipients
    hub.apply_command(args(household.sign(edit.remove(household.latest, aino.member_id, new_eero))))
    assert hub.recipients == [new_eero.recipient]  # removed at once
    # The versions the hub already holds, sent again: nothing changes, nothing refused.
    assert hub.apply_command(args(*household.versions))["changed"] is False
    assert hub.refused == {}


def test_forged_unsigned_rolled_back_and_gapped_lists_are_refused_counted_and_the_last_valid_kept(
    tmp_path: Path, household: Household, caplog: pytest.LogCaptureFixture
) -> None:
    hub = pinned(tmp_path, household)
    before = hub.recipients
    operator = keys.generate("m_support")
    latest = household.latest
    # Forged: the operator signs a list with its own key added.
    forged = ml.sign(
        ml.make_body("hh_1", 3, latest.digest, [*latest.body.members, operator.entry]), operator.member_id,
        operator.signing,
    )  # fmt: skip
    # "Unsigned": a current member's name on it, but not their signature.
    unsigned = ml.SignedList(body=forged.body, signer="m_0", sig="00" * 64)
    # Impersonation: the operator's key, but claiming to be a member.
    impersonated = ml.sign(ml.make_body("hh_1", 3, latest.digest, [operator.entry]), "m_0", operator.signing)
    for bad in (forged, unsigned, impersonated):
        with pytest.raises(MemberListRefused) as refused:
            hub.apply_command(args(bad))
        assert refused.value.detail == {"reason": "forged", "version": 2}
    # Rolled back: version 1 alone, validly signed once.
    with pytest.raises(MemberListRefused) as refused:
        hub.apply_command(args(household.versions[0]))
    assert refused.value.detail["reason"] == "rollback"
    # A gap: version 4 without version 3.
    v3 = edit.remove(latest, "m_1", household.members[0])
    v4 = edit.add(ml.verify_next(latest, v3), household.members[1].entry, household.members[0])
    with pytest.raises(MemberListRefused) as refused:
        hub.apply_command(args(v4))
    assert refused.value.detail["reason"] == "gap"
    with pytest.raises(MemberListRefused) as refused:
        hub.apply_command({"versions": "everyone"})
    assert refused.value.detail["reason"] == "malformed"
    assert hub.refused == {"forged": 3, "rollback": 1, "gap": 1, "malformed": 1}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 4  # once per reason: a hostile register cannot flood the log
    assert hub.recipients == before
    assert HubMembers(tmp_path).recipients == before  # nothing of it reached the disk
    summary = hub.summary()
    assert summary["refused"] == {"forged": 3, "rollback": 1, "gap": 1, "malformed": 1}
    assert summary["version"] == 2
    assert summary["last_refusal"].startswith("malformed")
    # With the missing version, the same version 4 is taken.
    assert hub.apply_command(args(v3, v4))["version"] == 4


def test_an_unpinned_hub_takes_no_list(tmp_path: Path, household: Household) -> None:
    hub = HubMembers(tmp_path)
    with pytest.raises(MemberListRefused) as refused:
        hub.apply_command(args(*household.versions))
    assert refused.value.detail["reason"] == "unpinned"
    assert hub.recipients == []


def test_erasure_leaves_no_recipient_until_a_newer_signed_list(tmp_path: Path, household: Household) -> None:
    hub = pinned(tmp_path, household)
    hub.erase()
    assert hub.recipients == []
    assert HubMembers(tmp_path).recipients == []  # also after a restart
    assert hub.apply_command(args(*household.versions))["changed"] is False  # a replay does not bring them back
    assert hub.recipients == []
    hub.apply_command(args(household.sign(edit.remove(household.latest, "m_1", household.members[0]))))
    assert hub.recipients == [household.members[0].recipient]


def test_a_damaged_state_file_refuses_everything(tmp_path: Path, household: Household) -> None:
    pinned(tmp_path, household)
    (tmp_path / STATE_FILE).write_bytes(b'{"pin": 1')
    hub = HubMembers(tmp_path)
    assert hub.recipients == []
    assert not hub.pinned


def test_member_keys_on_disk_are_private(tmp_path: Path) -> None:
    k = keys.generate()
    keys.save(k, tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "keys").iterdir())
    loaded = keys.load(tmp_path / "keys")
    assert (loaded.member_id, loaded.recipient, loaded.ed25519) == (k.member_id, k.recipient, k.ed25519)
    (tmp_path / "keys").chmod(0o755)
    with pytest.raises(keys.KeyDirError, match="0700"):
        keys.load(tmp_path / "keys")
    with pytest.raises(keys.KeyDirError, match="already"):
        keys.save(k, tmp_path / "keys")


def test_edits_refuse_what_would_break_the_list(household: Household) -> None:
    aino, eero = household.members
    outsider = keys.generate("m_x")
    with pytest.raises(edit.EditError, match="not a member"):
        edit.add(household.latest, outsider.entry, outsider)
    with pytest.raises(edit.EditError, match="already"):
        edit.add(household.latest, eero.entry, aino)
    solo = Household(1)
    with pytest.raises(edit.EditError, match="at least one"):
        edit.remove(solo.latest, "m_0", solo.members[0])
    with pytest.raises(edit.EditError, match="keeps the member's id"):
        edit.rotate(household.latest, aino, keys.generate("m_other"))
    stale = keys.MemberKeys(aino.member_id, aino.identity, Ed25519PrivateKey.generate())
    with pytest.raises(edit.EditError, match="with these keys"):
        edit.remove(household.latest, "m_1", stale)


def test_provision_shows_the_first_members_code_and_pins_only_what_is_confirmed(
    household: Household, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import _confirm_code

    code = household.members[0].pairing_code
    asked: list[str] = []
    answers = iter(["y", "n", "  7gut d6xk f7gh iflt fccz "])

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", answer)
    assert _confirm_code(household.versions) == code
    assert code in asked[0]
    assert _confirm_code(household.versions) is None
    # No list yet: the code is typed from the member's device, in any case and spacing.
    assert _confirm_code([]) == "7GUT-D6XK-F7GH-IFLT-FCCZ"
