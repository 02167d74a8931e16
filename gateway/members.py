"""The hub's copy of the household's member list: who clips are encrypted to, and only as the household signed it.

At installation ``kotihub provision`` pins the pairing code of a member's signing key (shown on that member's own
device, confirmed by the technician or typed in). From then on the hub takes a member list only if it is
anchored in that key and every later version is signed by a member of the version before, numbered one higher
and chained by digest (:mod:`cloud_sync.memberlist`). A forged, unsigned, rolled-back or forked list is refused,
counted (``kotihub status``) and reported to the register; the hub keeps encrypting to the last valid list.

What stays on disk: ``member-list.json`` (0600) with the pinned code and the last verified version — member ids
and public keys, no names. After an erasure of everything the hub keeps that version only to check the next one
and to refuse replays; it encrypts to nobody until the household signs a newer version.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from cloud_sync import memberlist as ml
from cloud_sync.privatefile import write_private
from cloud_sync.protocol import SignedMemberList

log = logging.getLogger(__name__)

STATE_FILE = "member-list.json"
LEGACY_FILE = "members.json"
"""Written by earlier versions, with every member's name in the clear (0644): removed on sight."""


class _State(msgspec.Struct):
    pin: str
    held: SignedMemberList | None = None
    erased: bool = False


class MemberListRefused(Exception):
    """A member list the hub would not take; ``detail`` goes back to the register with the command's result."""

    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


class NotPinned(Exception):
    """The hub has no pinned root of trust (not provisioned with a pairing code)."""


class HubMembers:
    """The verified member list and its refusals; thread-safe (commands run in a worker thread). The caller hands
    :attr:`recipients` to the camera driver after a change, on its own thread."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.refused: Counter[str] = Counter()
        self.last_refusal = ""
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._verified: ml.Verified | None = None
        self._load()

    def _load(self) -> None:
        legacy = self.path.with_name(LEGACY_FILE)
        if legacy.exists():
            legacy.unlink()
            log.warning("removed %s (member names in the clear, no longer used)", legacy)
        try:
            state = msgspec.json.decode(self.path.read_bytes(), type=_State)
            verified = None
            if state.held is not None:
                body, data = ml.open_signed(state.held)
                verified = ml.Verified(state.held, body, data)
        except FileNotFoundError:
            return
        except (msgspec.DecodeError, msgspec.ValidationError, ml.MemberListError, UnicodeDecodeError) as exc:
            # Not silently "no members": the file was damaged; refuse everything until re-provisioned.
            log.error(
                "%s is unreadable (%s): clips cannot be encrypted until the hub is provisioned again", self.path, exc
            )
            return
        self._state, self._verified = state, verified

    @property
    def pinned(self) -> bool:
        return self._state is not None

    @property
    def version(self) -> int:
        return self._verified.version if self._verified is not None else 0

    @property
    def recipients(self) -> list[str]:
        if self._verified is None or self._state is None or self._state.erased:
            return []
        return self._verified.recipients

    def pin(self, code: str, chain: Sequence[SignedMemberList] = ()) -> None:
        """Installation: pins ``code`` and, if the register already holds versions, anchors them in it."""
        code = ml.normalise_code(code)
        with self._lock:
            self._state, self._verified = _State(pin=code), None
            if chain:
                self._verified = ml.verify_chain(None, chain, pinned_code=code)
                self._state.held = self._verified.signed
            write_private(self.path, msgspec.json.encode(self._state))

    def apply(self, versions: Sequence[SignedMemberList]) -> dict[str, Any]:
        """Takes the newest of ``versions`` if the chain verifies; raises :class:`MemberListRefused` otherwise."""
        with self._lock:
            if self._state is None:
                self._refuse("unpinned", "this hub has no pinned pairing code (run `kotihub provision`)")
            assert self._state is not None
            held = self._verified
            try:
                verified = ml.verify_chain(held, versions, pinned_code=self._state.pin)
            except ml.MemberListError as exc:
                self._refuse(exc.reason, str(exc))
            if verified is held:
                return {"version": self.version, "changed": False}
            self._state.held, self._state.erased = verified.signed, False
            write_private(self.path, msgspec.json.encode(self._state))
            self._verified = verified
        log.info("member list version %d verified: %d recipient(s)", verified.version, len(verified.recipients))
        return {"version": verified.version, "changed": True, "members": len(verified.body.members)}

    def apply_command(self, args: dict[str, Any]) -> dict[str, Any]:
        """The ``member_keys`` command: ``{"versions": [SignedMemberList, ...]}`` as the register relays them."""
        try:
            versions = msgspec.convert(args.get("versions"), list[SignedMemberList])
        except msgspec.ValidationError as exc:
            with self._lock:
                self._refuse("malformed", f"member_keys command without valid versions: {exc}")
        return self.apply(versions)

    def erase(self) -> None:
        """Erasure of everything: encrypt to nobody until the household signs a newer list."""
        with self._lock:
            if self._state is None or self._state.erased:
                return
            self._state.erased = True
            write_private(self.path, msgspec.json.encode(self._state))
        log.info("member recipients erased; clips wait for a newly signed member list")

    def _refuse(self, reason: str, message: str) -> NoReturn:
        self.refused[reason] += 1
        self.last_refusal = f"{reason}: {message}"[:300]
        # Once per reason and then every 100th: a hostile register must not be able to flood the log.
        if self.refused[reason] % 100 == 1:
            log.warning("refused a member list (%s, %d so far): %s", reason, self.refused[reason], message)
        raise MemberListRefused(message, {"reason": reason, "version": self.version})

    def summary(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "version": self.version,
            "recipients": len(self.recipients),
            "erased": bool(self._state and self._state.erased),
            "refused": dict(self.refused),
            "last_refusal": self.last_refusal,
        }
