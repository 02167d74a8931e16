"""The signed member list's bytes and rules: golden vectors, canonical encoding, and that any change to a signed
version, any reordering, replay or gap in a history, is refused with a MemberListError (never another exception)."""

from __future__ import annotations

import base64
import json
import string
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync import memberlist as ml
from tests.vectors.memberlist import generate

VECTORS = json.loads((Path(generate.__file__).with_name("vectors.json")).read_text())
AGE = [
    "age14s584atzajrfyr6vcz6aex3xu00zdjcz572u6d8ze5cn93j8fqdswqvq4v",
    "age175vg9dnn0tdl0taqnws4y25wwqda89jcxdej5m4kdj4thkfa2d5qj5yu9d",
    "age144rh5pf6ve7pgkq7w975matecthgedyhmf5nhh4qmf3j7k8ea9cqeh06gd",
    "age1mwwx6fy5ujx3w6l7kw0585e4q3dxfw45vgequzwdug4aa7y9ggqs8juf2v",
]
SETTINGS = settings(derandomize=True, max_examples=60, deadline=None)


def _signed(case: dict[str, Any]) -> ml.SignedList:
    return msgspec.convert(case["signed"], ml.SignedList)


# ------------------------------------------------------------------------------------------------ golden vectors


def test_golden_vectors_are_reproduced_byte_for_byte() -> None:
    history = generate.history()
    assert len(history) == len(VECTORS["versions"]) == 4
    for (what, signed), case in zip(history, VECTORS["versions"], strict=True):
        assert what == case["what"]
        assert base64.b64decode(signed.body).decode() == case["body_utf8"]
        assert ml.body_digest(case["body_utf8"].encode()) == case["digest"]
        assert json.loads(ml.encode_signed(signed)) == case["signed"]
    for name, code in VECTORS["pairing_codes"].items():
        assert ml.pairing_code(ml.public_hex(generate.key(name))) == code


def test_golden_history_verifies_and_anchors_in_the_first_members_code() -> None:
    versions = [_signed(c) for c in VECTORS["versions"]]
    chain = ml.audit_chain(versions)
    assert [v.version for v in chain] == [1, 2, 3, 4]
    assert [v.body.prev for v in chain[1:]] == [c["digest"] for c in VECTORS["versions"][:-1]]
    latest = ml.verify_chain(None, versions, pinned_code=VECTORS["pairing_codes"]["m_aino"])
    assert latest.recipients == [AGE[2]]  # Eero's rotated key, Aino removed
    # Eero's first key never signed a version that lists it as the signer's own entry *before* signing: a hub
    # paired with his rotated key anchors at version 4, the first version that key signed.
    assert ml.verify_chain(None, versions, pinned_code=VECTORS["pairing_codes"]["m_eero2"]).version == 4
    with pytest.raises(ml.Forged):
        ml.verify_chain(None, versions, pinned_code="AAAA-AAAA-AAAA-AAAA-AAAA")


def test_the_signed_bytes_are_the_domain_and_the_body() -> None:
    case = VECTORS["versions"][0]
    key = generate.key("m_aino").public_key()
    key.verify(bytes.fromhex(case["signed"]["sig"]), b"kotihub member list v1\n" + case["body_utf8"].encode())


# ------------------------------------------------------------------------------------------------------ properties

member_ids = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
seeds = st.binary(min_size=32, max_size=32)


@st.composite
def member_sets(draw: st.DrawFn, min_size: int = 1) -> list[tuple[str, Ed25519PrivateKey, str]]:
    ids = draw(st.lists(member_ids, min_size=min_size, max_size=4, unique=True))
    keys = draw(st.lists(seeds, min_size=len(ids), max_size=len(ids), unique=True))
    return [
        (mid, Ed25519PrivateKey.from_private_bytes(k), AGE[i]) for i, (mid, k) in enumerate(zip(ids, keys, strict=True))
    ]


def _entries(members: list[tuple[str, Ed25519PrivateKey, str]]) -> list[ml.Entry]:
    return [ml.Entry(id=mid, age=age, ed25519=ml.public_hex(k)) for mid, k, age in members]


@SETTINGS
@given(member_sets(), st.integers(1, ml.MAX_VERSION))
def test_canonical_encoding_round_trips_and_is_unique(members: list[Any], version: int) -> None:
    prev = "" if version == 1 else "ab" * 32
    body = ml.make_body("hh_1", version, prev, _entries(members))
    data = ml.encode_body(body)
    assert ml.decode_body(data) == body
    # The same list given in another order encodes to the same bytes.
    assert ml.encode_body(ml.make_body("hh_1", version, prev, list(reversed(_entries(members))))) == data
    # Whitespace or another key order is another encoding of the same list: refused.
    with pytest.raises(ml.Malformed):
        ml.decode_body(json.dumps(json.loads(data), indent=1).encode())


@SETTINGS
@given(member_sets(), st.data())
def test_any_changed_byte_of_a_signed_version_is_refused(members: list[Any], data: st.DataObject) -> None:
    mid, key, _ = members[0]
    signed = ml.sign(ml.make_body("hh_1", 1, "", _entries(members)), mid, key)
    assert ml.verify_genesis(signed).version == 1
    raw = bytearray(ml.encode_signed(signed))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    try:
        tampered = ml.decode_signed(bytes(raw))
    except ml.Malformed:
        return
    if tampered == signed:  # a flip inside JSON that decodes to the same value (cannot happen here, but be exact)
        return
    with pytest.raises(ml.MemberListError):
        ml.verify_genesis(tampered)


@SETTINGS
@given(member_sets(min_size=2), st.integers(0, 2))
def test_histories_verify_and_replays_gaps_and_forks_are_refused(members: list[Any], cut: int) -> None:
    (first_id, first_key, _), *others = members
    entries = _entries(members)
    versions = [ml.sign(ml.make_body("hh_1", 1, "", entries[:1]), first_id, first_key)]
    for n in range(2, len(members) + 1):
        prev = ml.body_digest(ml.open_signed(versions[-1])[1])
        versions.append(ml.sign(ml.make_body("hh_1", n, prev, entries[:n]), first_id, first_key))
    code = ml.pairing_code(ml.public_hex(first_key))
    latest = ml.verify_chain(None, versions, pinned_code=code)
    assert latest.version == len(members)
    assert ml.verify_chain(latest, versions, pinned_code=code) is latest  # resent: nothing changes
    held = ml.verify_chain(None, versions[:1], pinned_code=code)
    if len(versions) > 2:
        with pytest.raises(ml.Gap):
            ml.verify_chain(held, versions[2:], pinned_code=code)
    with pytest.raises(ml.Rollback):
        ml.verify_chain(latest, versions[: max(1, len(versions) - 1 - cut)], pinned_code=code)
    # A version signed by someone who is not yet a member (the last one added) is forged.
    other_id, other_key, _ = others[-1]
    prev = ml.body_digest(ml.open_signed(versions[0])[1])
    forged = ml.sign(ml.make_body("hh_1", 2, prev, entries), other_id, other_key)
    with pytest.raises(ml.Forged):
        ml.verify_next(held, forged)
    # The right number after another predecessor: a fork.
    fork = ml.sign(ml.make_body("hh_1", 2, "cd" * 32, entries[:2]), first_id, first_key)
    with pytest.raises(ml.Fork):
        ml.verify_next(held, fork)
    other_household = ml.sign(ml.make_body("hh_2", 2, prev, entries[:2]), first_id, first_key)
    with pytest.raises(ml.Fork):
        ml.verify_next(held, other_household)


def test_the_cap_and_duplicates_are_refused() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    too_many = [ml.Entry(id=f"m{i:02}", age=AGE[0], ed25519=f"{i:064x}") for i in range(ml.MAX_MEMBERS + 1)]
    with pytest.raises(ml.Malformed):
        ml.make_body("hh_1", 1, "", too_many)
    same_key = [ml.Entry(id=f"m{i}", age=AGE[i], ed25519=ml.public_hex(key)) for i in range(2)]
    with pytest.raises(ml.Malformed, match="share a key"):
        ml.make_body("hh_1", 1, "", same_key)
    with pytest.raises(ml.Malformed, match="predecessor"):
        ml.make_body("hh_1", 2, "", same_key[:1])
