"""The app's member-list changes on the server: it proposes the exact canonical bytes, appends only what the
session's member signed and what verifies, and the hub's verifier takes the result."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml
from cloud_sync.protocol import SignedMemberList
from cloud_sync.register.errors import Conflict, Forbidden, Invalid, NotFound
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp import memberchange as mc
from gateway.members import HubMembers, MemberListRefused
from household import keys as member_keys


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(Settings(state_dir=tmp_path / "register"))
    try:
        yield r
    finally:
        r.close()


def _sign(p: mc.Proposal, signer: str, key: Ed25519PrivateKey) -> SignedMemberList:
    body = base64.b64decode(p.body)
    return SignedMemberList(body=p.body, signer=signer, sig=key.sign(ml.signed_bytes(body)).hex())


def _keys(reg: Registry, h: str, name: str) -> member_keys.MemberKeys:
    mid = reg.add_member(h, name, str(member_keys.generate().recipient), actor="test").member_id
    return member_keys.generate(mid)


def _latest(reg: Registry, h: str) -> ml.Verified:
    latest = mc.latest(reg, h)
    assert latest is not None
    return latest


def _start(reg: Registry, h: str, first: member_keys.MemberKeys) -> None:
    change = mc.ChangeRequest("genesis", age=first.recipient, ed25519=first.ed25519)
    mc.submit(
        reg, h, first.member_id, _sign(mc.propose(reg, h, first.member_id, change), first.member_id, first.signing)
    )


def test_genesis_add_remove_rotate_verify_on_the_hub(reg: Registry, tmp_path: Path) -> None:
    h = reg.create_household("Koti", actor="test")
    aino, eero = _keys(reg, h, "Aino"), _keys(reg, h, "Eero")
    _start(reg, h, aino)
    (tmp_path / "hub").mkdir(exist_ok=True)
    hub = HubMembers(tmp_path / "hub")
    hub.pin(aino.pairing_code, mc.chain(reg, h))

    mc.post_keys(reg, h, eero.member_id, mc.KeysPosted(age=eero.recipient, ed25519=eero.ed25519))
    [req] = mc.requests(reg, h)
    proposal = mc.propose(reg, h, aino.member_id, mc.ChangeRequest("add", request=req.id))
    assert base64.b64decode(proposal.prev_body) == ml.encode_body(_latest(reg, h).body)
    mc.submit(reg, h, aino.member_id, _sign(proposal, aino.member_id, aino.signing))
    assert mc.requests(reg, h) == []  # done: the keys are in the list
    hub.apply(mc.chain(reg, h, after=hub.version))
    assert sorted(hub.recipients) == sorted([aino.recipient, eero.recipient])

    new = member_keys.generate(eero.member_id)
    rotate = mc.ChangeRequest("rotate", age=new.recipient, ed25519=new.ed25519)
    mc.submit(reg, h, eero.member_id, _sign(mc.propose(reg, h, eero.member_id, rotate), eero.member_id, eero.signing))
    remove = mc.ChangeRequest("remove", member=aino.member_id)
    mc.submit(reg, h, eero.member_id, _sign(mc.propose(reg, h, eero.member_id, remove), eero.member_id, new.signing))
    hub.apply(mc.chain(reg, h, after=hub.version))
    assert hub.recipients == [new.recipient]
    version, shown = mc.members(reg, h)
    assert version == 4
    assert [(m.id, m.name, m.pairing_code) for m in shown] == [(eero.member_id, "Eero", new.pairing_code)]


def test_refusals(reg: Registry, tmp_path: Path) -> None:
    h = reg.create_household("Koti", actor="test")
    aino, eero, mallory = _keys(reg, h, "Aino"), _keys(reg, h, "Eero"), _keys(reg, h, "Mallory")
    with pytest.raises(Conflict):  # nothing to change yet
        mc.propose(reg, h, aino.member_id, mc.ChangeRequest("remove", member=aino.member_id))
    _start(reg, h, aino)
    with pytest.raises(Conflict):  # a second first version
        mc.propose(reg, h, eero.member_id, mc.ChangeRequest("genesis", age=eero.recipient, ed25519=eero.ed25519))
    with pytest.raises(Forbidden):  # not a member
        mc.propose(reg, h, mallory.member_id, mc.ChangeRequest("remove", member=aino.member_id))
    with pytest.raises(Conflict):  # the last member stays
        mc.propose(reg, h, aino.member_id, mc.ChangeRequest("remove", member=aino.member_id))
    with pytest.raises(NotFound):
        mc.propose(reg, h, aino.member_id, mc.ChangeRequest("add", request="mreq_nope"))
    with pytest.raises(Invalid):
        mc.post_keys(reg, h, eero.member_id, mc.KeysPosted(age="age1nope", ed25519="00"))

    # Inviting and declining others' requests are for members of the list; withdrawing one's own is not.
    with pytest.raises(Forbidden):
        mc.invite(reg, h, "Vieras", by=mallory.member_id, now=0.0)
    with pytest.raises(Invalid):
        mc.invite(reg, h, "\x07", by=aino.member_id, now=0.0)
    mc.post_keys(reg, h, eero.member_id, mc.KeysPosted(age=eero.recipient, ed25519=eero.ed25519))
    [eero_req] = mc.requests(reg, h)
    with pytest.raises(Forbidden):
        mc.decline(reg, h, eero_req.id, by=mallory.member_id)
    mc.decline(reg, h, eero_req.id, by=eero.member_id)
    assert mc.requests(reg, h) == []
    assert mc.invite(reg, h, "Vieras", by=aino.member_id, now=0.0) in mc.names(reg, h)

    # A member list signed by a non-member: the session's own name, a valid signature, but not a member's key.
    mc.post_keys(reg, h, mallory.member_id, mc.KeysPosted(age=mallory.recipient, ed25519=mallory.ed25519))
    [req] = mc.requests(reg, h)
    proposal = mc.propose(reg, h, aino.member_id, mc.ChangeRequest("add", request=req.id))
    with pytest.raises(Invalid) as refused:
        mc.submit(reg, h, mallory.member_id, _sign(proposal, mallory.member_id, mallory.signing))
    assert refused.value.code == "member_list_bad_signature"
    # Aino's valid signature submitted in another member's session: refused, the signer must be the session.
    with pytest.raises(Forbidden):
        mc.submit(reg, h, mallory.member_id, _sign(proposal, aino.member_id, aino.signing))
    assert _latest(reg, h).version == 1

    # Another household's list does not reach this hub, and its member's signature does not extend this list.
    other = reg.create_household("Muu", actor="test")
    (tmp_path / "hub").mkdir(exist_ok=True)
    hub = HubMembers(tmp_path / "hub")
    hub.pin(aino.pairing_code, mc.chain(reg, h))
    stranger = member_keys.generate()
    _start(reg, other, stranger)
    with pytest.raises(MemberListRefused):
        hub.apply(mc.chain(reg, other))
    stray = ml.sign(ml.make_body(h, 2, _latest(reg, h).digest, [stranger.entry]), stranger.member_id, stranger.signing)
    with pytest.raises(Invalid):
        mc.submit(reg, h, stranger.member_id, stray)
