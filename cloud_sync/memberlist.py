"""The household's signed member list: its exact bytes, signature and the rules that chain its versions.

Part of the wire contract (next to :mod:`cloud_sync.protocol`): the household's tools sign it, the register stores
and relays it, the hub verifies it before it encrypts a clip to anyone. Nothing here trusts the register.

The signed bytes of a version are exactly ``DOMAIN + body`` where ``body`` is the canonical JSON encoding of
:class:`Body` made by :func:`encode_body` — keys in the field order below, no whitespace, members sorted by
``id`` — and a body that is not byte-for-byte canonical is refused, so one list has one encoding and one hash.
The signature is Ed25519 (RFC 8032) by the signing key of ``signer``, who must be a member of the *previous*
version (of this version itself only for the first one a hub trusts, and then only if its key is the pinned one).
Each body names the SHA-256 of the previous version's body (``prev``) and a version number one higher, so the
versions form a hash chain: a replayed old version, a reordered or a forked history is refused.

Holds no names: a member is an id, an age X25519 recipient (clips are encrypted to it) and an Ed25519 public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.protocol import SignedMemberList

SignedList = SignedMemberList

DOMAIN: Final = b"kotihub member list v1\n"
"""Prefix of the signed bytes, so a member's signature over a list can never be mistaken for anything else."""
PAIRING_DOMAIN: Final = b"kotihub pairing code v1\n"
MAX_MEMBERS: Final = 32
"""A household has at most this many members, which bounds a version to about 7 KB."""
MAX_VERSION: Final = 2**31 - 1

_MemberId = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}\\Z")]
_AgeRecipient = Annotated[str, msgspec.Meta(pattern="^age1[02-9ac-hj-np-z]{58}\\Z")]
_Ed25519Hex = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}\\Z")]
_HouseholdId = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}\\Z")]
_Prev = Annotated[str, msgspec.Meta(pattern="^([0-9a-f]{64})?\\Z")]


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One member: a stable id, the age recipient clips are encrypted to, the Ed25519 key that signs changes."""

    id: _MemberId
    age: _AgeRecipient
    ed25519: _Ed25519Hex


class Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a member signs: the whole list as it is from this version on."""

    household: _HouseholdId
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]
    prev: _Prev
    members: Annotated[list[Entry], msgspec.Meta(min_length=1, max_length=MAX_MEMBERS)]


class MemberListError(ValueError):
    """A version was refused; ``reason`` is a stable word for counters and replies."""

    reason = "malformed"


class Malformed(MemberListError):
    reason = "malformed"


class Forged(MemberListError):
    """Bad signature, or signed by someone who is not a current member, or not anchored in the pinned key."""

    reason = "forged"


class Rollback(MemberListError):
    """A version not newer than the one held: a replay of an old list."""

    reason = "rollback"


class Gap(MemberListError):
    """A version that skips one the verifier has not seen; the missing ones are needed to check the chain."""

    reason = "gap"


class Fork(MemberListError):
    """The right number but the wrong predecessor (``prev``), or another household's list."""

    reason = "fork"


@dataclass(frozen=True)
class Verified:
    """A version whose signature and place in the chain were checked."""

    signed: SignedList
    body: Body
    body_bytes: bytes

    @property
    def version(self) -> int:
        return self.body.version

    @property
    def digest(self) -> str:
        return body_digest(self.body_bytes)

    @property
    def recipients(self) -> list[str]:
        return [m.age for m in self.body.members]

    def member(self, member_id: str) -> Entry | None:
        return next((m for m in self.body.members if m.id == member_id), None)


# ------------------------------------------------------------------------------------------------ encoding


def encode_body(body: Body) -> bytes:
    """The canonical bytes of ``body`` (members must already be sorted by id; see :func:`make_body`)."""
    return msgspec.json.encode(body)


def body_digest(body_bytes: bytes) -> str:
    return hashlib.sha256(body_bytes).hexdigest()


def signed_bytes(body_bytes: bytes) -> bytes:
    return DOMAIN + body_bytes


def make_body(household: str, version: int, prev: str, members: Sequence[Entry]) -> Body:
    """A valid body: members sorted by id, ids and keys unique, within the cap (raises :class:`Malformed`)."""
    body = Body(household=household, version=version, prev=prev, members=sorted(members, key=lambda m: m.id))
    return decode_body(encode_body(body))


def decode_body(data: bytes) -> Body:
    """Parses and checks a body, refusing anything that is not exactly its canonical encoding."""
    try:
        body = msgspec.json.decode(data, type=Body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: bad UTF-8
        raise Malformed(f"member list body is invalid: {exc}") from exc
    if encode_body(body) != data:
        raise Malformed("member list body is not in canonical form")
    ids = [m.id for m in body.members]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise Malformed("member ids must be unique and sorted")
    if len({m.ed25519 for m in body.members}) != len(ids) or len({m.age for m in body.members}) != len(ids):
        raise Malformed("two members share a key")
    if (body.version == 1) != (body.prev == ""):
        raise Malformed("version 1 and only version 1 has no predecessor")
    return body


def public_key(entry: Entry) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(entry.ed25519))


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes_raw().hex()


def pairing_code(ed25519_hex: str) -> str:
    """The short code a member's device shows and the technician confirms at installation: 100 bits of
    SHA-256 over the signing key, as 20 base32 letters in groups of four (a register that wanted another key to
    match would need a 2^100 second preimage)."""
    digest = hashlib.sha256(PAIRING_DOMAIN + bytes.fromhex(ed25519_hex)).digest()
    code = base64.b32encode(digest[:13]).decode()[:20]
    return "-".join(code[i : i + 4] for i in range(0, 20, 4))


def normalise_code(code: str) -> str:
    """Accepts a code typed with or without dashes, spaces or lower case."""
    letters = "".join(ch for ch in code.upper() if ch.isalnum())
    if len(letters) != 20:
        raise ValueError("a pairing code has 20 letters and digits (XXXX-XXXX-XXXX-XXXX-XXXX)")
    return "-".join(letters[i : i + 4] for i in range(0, 20, 4))


def sign(body: Body, signer: str, key: Ed25519PrivateKey) -> SignedList:
    data = encode_body(body)
    return SignedList(body=base64.b64encode(data).decode(), signer=signer, sig=key.sign(signed_bytes(data)).hex())


def encode_signed(signed: SignedList) -> bytes:
    return msgspec.json.encode(signed)


def decode_signed(data: bytes | str) -> SignedList:
    try:
        return msgspec.json.decode(data, type=SignedList)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: bad UTF-8
        raise Malformed(f"signed member list is invalid: {exc}") from exc


# ---------------------------------------------------------------------------------------------- verification


def open_signed(signed: SignedList) -> tuple[Body, bytes]:
    """The body and its bytes, before any trust decision."""
    try:
        data = base64.b64decode(signed.body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Malformed("member list body is not base64") from exc
    return decode_body(data), data


def _check_signature(key_entry: Entry | None, signed: SignedList, data: bytes) -> None:
    if key_entry is None:
        raise Forged(f"signer {signed.signer!r} is not a current member")
    try:
        public_key(key_entry).verify(bytes.fromhex(signed.sig), signed_bytes(data))
    except (InvalidSignature, ValueError) as exc:
        raise Forged(f"signature of {signed.signer!r} does not verify") from exc


def verify_next(prev: Verified, signed: SignedList) -> Verified:
    """Checks that ``signed`` is the version right after ``prev``, signed by a member of ``prev``."""
    body, data = open_signed(signed)
    if body.household != prev.body.household:
        raise Fork("member list of another household")
    if body.version <= prev.version:
        raise Rollback(f"version {body.version} is not newer than the held version {prev.version}")
    if body.version > prev.version + 1:
        raise Gap(f"version {body.version} skips after the held version {prev.version}")
    if body.prev != prev.digest:
        raise Fork(f"version {body.version} does not follow the held version {prev.version}")
    _check_signature(prev.member(signed.signer), signed, data)
    return Verified(signed, body, data)


def verify_anchor(signed: SignedList, pinned_code: str, household: str | None = None) -> Verified:
    """Checks a version that a hub with no list yet takes as its first: signed by the member whose key has the
    pinned pairing code, and that member is in it."""
    body, data = open_signed(signed)
    if household is not None and body.household != household:
        raise Fork("member list of another household")
    signer = next((m for m in body.members if m.id == signed.signer), None)
    if signer is None or pairing_code(signer.ed25519) != normalise_code(pinned_code):
        raise Forged("not signed by the member whose pairing code was confirmed at installation")
    _check_signature(signer, signed, data)
    return Verified(signed, body, data)


def verify_chain(held: Verified | None, versions: Sequence[SignedList], *, pinned_code: str) -> Verified:
    """The newest version of ``versions`` after checking every link; ``held`` is what the verifier trusts now.

    Without ``held``, the chain starts at the first version anchored in the pinned key (earlier ones are skipped:
    they predate the member the hub was paired with). Raises on the first bad link; nothing is half-applied.
    """
    current = held
    newest_offered = 0
    for signed in versions:
        body, data = open_signed(signed)
        newest_offered = max(newest_offered, body.version)
        if current is None:
            try:
                current = verify_anchor(signed, pinned_code)
            except Forged:
                continue
        elif body.version <= current.version:
            if body.version == current.version and data != current.body_bytes:
                raise Fork(f"another version {body.version} than the one held")
            continue  # already held: the register resends what a hub has not acknowledged yet
        else:
            current = verify_next(current, signed)
    if current is None:
        raise Forged("no version is signed by the member whose pairing code was confirmed at installation")
    if current is held and held is not None and newest_offered < held.version:
        raise Rollback(f"version {newest_offered} is older than the held version {held.version}")
    return current


def verify_genesis(signed: SignedList) -> Verified:
    """Checks version 1: signed by one of the members it lists (the household's first member, on their device)."""
    body, data = open_signed(signed)
    if body.version != 1:
        raise Gap(f"the first version of a member list is 1, not {body.version}")
    _check_signature(next((m for m in body.members if m.id == signed.signer), None), signed, data)
    return Verified(signed, body, data)


def audit_chain(versions: Sequence[SignedList]) -> list[Verified]:
    """Checks a whole log from version 1, every signature and every link; what a member runs to audit the
    register's copy. Raises :class:`MemberListError` at the first bad version."""
    if not versions:
        return []
    out = [verify_genesis(versions[0])]
    for signed in versions[1:]:
        out.append(verify_next(out[-1], signed))
    return out
