"""Changes to the member list as a member's device makes them: each is the next version, signed by that member.

Pure functions: they take the newest version the device has verified and return the signed next one, refusing
what would leave the household without a member or over the cap.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloud_sync import memberlist as ml
from household.keys import MemberKeys


class EditError(ValueError):
    """The change cannot be made as asked (the message says why)."""


def genesis(household: str, first: MemberKeys) -> ml.SignedList:
    """Version 1: the household's first member, signing a list that holds only themselves."""
    return ml.sign(ml.make_body(household, 1, "", [first.entry]), first.member_id, first.signing)


def _next(latest: ml.Verified, members: Sequence[ml.Entry], by: MemberKeys) -> ml.SignedList:
    if latest.member(by.member_id) is None or latest.member(by.member_id) != by.entry:
        raise EditError(f"{by.member_id} is not a member of version {latest.version} with these keys")
    if not members:
        raise EditError("a household keeps at least one member")
    if len(members) > ml.MAX_MEMBERS:
        raise EditError(f"a household has at most {ml.MAX_MEMBERS} members")
    try:
        body = ml.make_body(latest.body.household, latest.version + 1, latest.digest, members)
    except ml.MemberListError as exc:
        raise EditError(str(exc)) from exc
    return ml.sign(body, by.member_id, by.signing)


def add(latest: ml.Verified, entry: ml.Entry, by: MemberKeys) -> ml.SignedList:
    if latest.member(entry.id) is not None:
        raise EditError(f"{entry.id} is already a member")
    return _next(latest, [*latest.body.members, entry], by)


def remove(latest: ml.Verified, member_id: str, by: MemberKeys) -> ml.SignedList:
    if latest.member(member_id) is None:
        raise EditError(f"{member_id} is not a member")
    return _next(latest, [m for m in latest.body.members if m.id != member_id], by)


def rotate(latest: ml.Verified, old: MemberKeys, new: MemberKeys) -> ml.SignedList:
    """Replaces ``old``'s keys by ``new``'s (same member id), signed with the old key, which the hub still trusts."""
    if new.member_id != old.member_id:
        raise EditError("a rotated key keeps the member's id")
    return _next(latest, [new.entry if m.id == old.member_id else m for m in latest.body.members], old)
