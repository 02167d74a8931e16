"""Who is calling: hub identities (from mTLS) and bearer-token principals, and the role rules.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored, which is enough for tokens of that
entropy (no salt or slow hash needed: there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from cloud_sync.register.errors import Forbidden

Role = Literal["household", "support", "admin"]
ROLES: Final[tuple[str, ...]] = ("household", "support", "admin")


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True)
class HubIdentity:
    """A hub as proven by its client certificate."""

    hub_id: str
    household_id: str
    cert_sha256: str = ""
    """SHA-256 of the certificate's DER; the register accepts only the hub's current certificate."""

    @property
    def actor(self) -> str:
        return f"hub:{self.hub_id}"


@dataclass(frozen=True)
class Principal:
    """A bearer-token holder: the household app (one household), customer support, or an admin."""

    token_id: str
    role: Role
    household_id: str | None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.token_id}"

    @property
    def is_operator(self) -> bool:
        return self.role != "household"


# What each role may do on /v1/households/{h}/… ("see" = read, "change" = write).
_PERMISSIONS: Final[dict[str, frozenset[Role]]] = {
    "household.read": frozenset({"household", "support", "admin"}),
    "members.read": frozenset({"household", "support", "admin"}),
    # Members carry the keys clips are encrypted to: only the household itself may change them.
    "members.change": frozenset({"household"}),
    # An operator may only propose a member; the proposal does nothing until a member signs it into the list.
    "members.request": frozenset({"support", "admin"}),
    "consents.read": frozenset({"household", "support", "admin"}),
    "consents.change": frozenset({"household", "support", "admin"}),
    "hubs.read": frozenset({"household", "support", "admin"}),
    "data.read": frozenset({"household", "admin"}),
    "commands.read": frozenset({"household", "support", "admin"}),
    "commands.change": frozenset({"household", "admin"}),
    # Clip ciphertext goes to the household only; nobody at the operator needs it, and nobody can decrypt it.
    "clips.read": frozenset({"household"}),
    "audit.read": frozenset({"household", "admin"}),
    "erase": frozenset({"household", "admin"}),
    # The operator's alarm desk calls the household and may acknowledge for them; support sees the desk.
    "alarms.ack": frozenset({"household", "support", "admin"}),
}


def require(principal: Principal, permission: str, household_id: str) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may do ``permission`` on ``household_id``."""
    if principal.role == "household" and principal.household_id != household_id:
        raise Forbidden("this token belongs to another household", code="wrong_household")
    if principal.role not in _PERMISSIONS[permission]:
        raise Forbidden(f"role {principal.role!r} may not do {permission!r}", code="role_forbidden")
