"""``kotihub member …``: what a member's device does with the member list — make keys, sign, verify, rotate.

Every change is signed here, with the member's own key, and checked against the whole log first: the device
verifies every version from the first, and that the register's history still contains the newest version this
device saw before (``seen`` in the key directory), so it never signs on top of a substituted or rolled-back list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from cloud_sync import memberlist as ml
from household import edit, keys
from household.client import HouseholdClient, RegisterRefused


class MemberToolError(Exception):
    """A member command could not be carried out; the message says why."""


def _client(args: argparse.Namespace) -> HouseholdClient:
    token = args.token or os.environ.get("KOTIHUB_HOUSEHOLD_TOKEN", "")
    if not token:
        raise MemberToolError("give --token or set KOTIHUB_HOUSEHOLD_TOKEN (the household app's API token)")
    return HouseholdClient(args.register, token, args.household, ca_file=args.ca_file)


def verified_log(client: HouseholdClient, key_dir: Path) -> list[ml.Verified]:
    """The register's whole log, every link checked, and consistent with what this device saw before."""
    entries = client.log()
    try:
        chain = ml.audit_chain([e.signed for e in entries])
    except ml.MemberListError as exc:
        raise MemberToolError(f"the register's member log does not verify: {exc}") from exc
    for entry, v in zip(entries, chain, strict=True):
        if entry.version != v.version or entry.digest != v.digest or entry.prev != v.body.prev:
            raise MemberToolError(f"the register mislabels version {v.version} of the member log")
        if v.body.household != client.household:
            raise MemberToolError("the member log belongs to another household")
    seen = keys.load_seen(key_dir)
    if seen is not None:
        version, digest = seen
        if len(chain) < version or chain[version - 1].digest != digest:
            raise MemberToolError(
                f"the register's history no longer contains version {version} as this device saw it "
                "(rolled back or substituted): do not trust it"
            )
    if chain:
        keys.save_seen(key_dir, chain[-1].version, chain[-1].digest)
    return chain


def _publish(client: HouseholdClient, key_dir: Path, signed: ml.SignedList) -> int:
    entry = client.append(signed)
    keys.save_seen(key_dir, entry.version, entry.digest)
    print(f"version {entry.version} stored ({entry.digest[:16]}); the household's hubs will verify it themselves")
    return 0


def _latest(client: HouseholdClient, key_dir: Path) -> ml.Verified:
    chain = verified_log(client, key_dir)
    if not chain:
        raise MemberToolError("the household has no member list yet: run `kotihub member init` first")
    return chain[-1]


def _keygen(args: argparse.Namespace) -> int:
    k = keys.generate(args.id)
    keys.save(k, args.keys)
    _describe(k)
    return 0


def _describe(k: keys.MemberKeys) -> None:
    print(f"member id     {k.member_id}")
    print(f"clip key      {k.recipient}")
    print(f"signing key   {k.ed25519}")
    print(f"pairing code  {k.pairing_code}   (confirm this when a hub is installed)")


def _show(args: argparse.Namespace) -> int:
    _describe(keys.load(args.keys))
    return 0


def _init(args: argparse.Namespace) -> int:
    me = keys.load(args.keys)
    client = _client(args)
    if verified_log(client, args.keys):
        raise MemberToolError("the household already has a member list; ask a member to add you")
    return _publish(client, args.keys, edit.genesis(args.household, me))


def _add(args: argparse.Namespace) -> int:
    me = keys.load(args.keys)
    client = _client(args)
    if args.request:
        req = next((r for r in client.requests() if r.id == args.request), None)
        if req is None:
            raise MemberToolError(f"no request {args.request!r}")
        entry = ml.Entry(id=req.member_id, age=req.recipient, ed25519=req.ed25519)
        print(f"signing request {req.id} by {req.requested_by}: pairing code {ml.pairing_code(req.ed25519)}")
    elif args.id and args.recipient and args.ed25519:
        entry = ml.Entry(id=args.id, age=args.recipient, ed25519=args.ed25519)
    else:
        raise MemberToolError("give --request ID, or --id, --recipient and --ed25519 of the new member")
    if args.expect_code and ml.pairing_code(entry.ed25519) != ml.normalise_code(args.expect_code):
        raise MemberToolError("the new member's signing key does not have the pairing code their device shows")
    return _publish(client, args.keys, edit.add(_latest(client, args.keys), entry, me))


def _remove(args: argparse.Namespace) -> int:
    me = keys.load(args.keys)
    client = _client(args)
    return _publish(client, args.keys, edit.remove(_latest(client, args.keys), args.member, me))


def _rotate(args: argparse.Namespace) -> int:
    old = keys.load(args.keys)
    client = _client(args)
    new = keys.generate(old.member_id)
    signed = edit.rotate(_latest(client, args.keys), old, new)
    # The new keys are on disk before the register can hold the version naming them: a crash in between leaves
    # them in DIR.next (`kotihub member show --keys DIR.next`), never a list this device cannot sign for.
    pending = args.keys.with_name(args.keys.name + ".next")
    keys.save(new, pending, overwrite=True)
    try:
        status = _publish(client, args.keys, signed)
    except RegisterRefused as exc:
        if exc.status:  # refused: the version was not stored, the old keys stay valid
            shutil.rmtree(pending)
            raise
        # No answer: the register may hold the version anyway. Keep both; `verify` shows which one is current.
        raise MemberToolError(f"{exc}; the new keys are kept in {pending} until you know which are current") from exc
    keys.save(new, args.keys, overwrite=True)
    shutil.rmtree(pending)
    _describe(new)
    return status


def _verify(args: argparse.Namespace) -> int:
    chain = verified_log(_client(args), args.keys)
    for v in chain:
        print(f"version {v.version}  {v.digest[:16]}  signed by {v.signed.signer}  {len(v.body.members)} member(s)")
    if chain:
        print("members now: " + ", ".join(f"{m.id} ({ml.pairing_code(m.ed25519)})" for m in chain[-1].body.members))
    print(f"ok: {len(chain)} version(s), every signature and link verified")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    member = sub.add_parser("member", help="a household member's keys and the signed member list")
    msub = member.add_subparsers(dest="member_command", required=True)
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--keys", type=Path, required=True, help="the member's key directory (0700)")
    online = argparse.ArgumentParser(add_help=False, parents=[keyed])
    online.add_argument("--register", required=True, help="https:// URL of the register")
    online.add_argument("--household", required=True, help="the household id (hh_…)")
    online.add_argument("--token", default="", help="household API token (or KOTIHUB_HOUSEHOLD_TOKEN)")
    online.add_argument("--ca-file", type=Path, default=None, help="the register's CA certificate")
    kg = msub.add_parser("keygen", parents=[keyed], help="make this member's age and Ed25519 keys here")
    kg.add_argument("--id", default=None, help="member id (default: derived from the signing key)")
    kg.set_defaults(func=_guard(_keygen))
    msub.add_parser("show", parents=[keyed], help="public keys and pairing code").set_defaults(func=_guard(_show))
    msub.add_parser("init", parents=[online], help="sign the household's first member list").set_defaults(
        func=_guard(_init)
    )
    add = msub.add_parser("add", parents=[online], help="sign a new version that adds a member")
    add.add_argument("--request", help="sign an operator's request (kotihub-register member request)")
    add.add_argument("--id", help="the new member's id (with --recipient and --ed25519)")
    add.add_argument("--recipient", help="the new member's age1… key")
    add.add_argument("--ed25519", help="the new member's signing key (hex)")
    add.add_argument("--expect-code", help="the pairing code the new member's device shows (checked)")
    add.set_defaults(func=_guard(_add))
    rm = msub.add_parser("remove", parents=[online], help="sign a new version without a member")
    rm.add_argument("member", help="the id of the member to remove")
    rm.set_defaults(func=_guard(_remove))
    msub.add_parser("rotate", parents=[online], help="replace this member's keys").set_defaults(func=_guard(_rotate))
    msub.add_parser("verify", parents=[online], help="audit the register's log").set_defaults(func=_guard(_verify))


def _guard(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns the expected failures of a member command into one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (MemberToolError, RegisterRefused, keys.KeyDirError, edit.EditError, ValueError) as exc:
            print(f"kotihub member: {exc}", file=sys.stderr)
            return 1

    return run
