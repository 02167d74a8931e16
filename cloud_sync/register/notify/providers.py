"""What a notification provider adapter is, and the errors it raises.

A provider either accepted a message (and returns its reference), refused it for good (:class:`Permanent`: a
number that does not exist), refused it for now (:class:`Transient`: 5xx, 429), or left us not knowing
(:class:`Ambiguous`: a timeout or a dropped connection after the request went out). Only the last can have
reached the person already, so only then — and after a crash — is the provider asked before sending again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SendError(Exception):
    """Base of the provider errors; the message never holds the recipient's address."""


class Transient(SendError):
    """Not accepted this time; retried."""


class Ambiguous(Transient):
    """May or may not have been accepted; the provider is asked before it is sent again."""


class Permanent(SendError):
    """Will never be accepted (bad number or address); the job fails and the alarm desk shows it."""


class CannotCheck(Exception):
    """This provider has no way to tell whether it accepted a message."""


@dataclass(frozen=True, kw_only=True)
class Outgoing:
    job_id: str
    channel: str
    to: str
    text: str
    subject: str = ""
    language: str = "fi"
    status_url: str = ""
    """Where the provider reports delivery; carries the job id, which tags the request as ours."""
    gather_url: str = ""
    """Voice: where the provider posts the digit pressed."""
    not_before: float = 0.0
    """When the job was first decided on (its intent): what the provider accepted since then may be ours."""
    known_refs: frozenset[str] = frozenset()
    """Provider references already attributed to other jobs."""


class Provider(Protocol):
    def send(self, msg: Outgoing) -> str:
        """Hands the message over; returns the provider's reference. Raises :class:`SendError`."""
        ...

    def lookup(self, msg: Outgoing) -> str | None:
        """The reference of a request for ``msg`` the provider already accepted, or None. Raises
        :class:`CannotCheck` if the provider cannot say, :class:`Transient` if it cannot say now."""
        ...

    def hang_up(self, ref: str) -> None:
        """Ends a call still ringing or in progress (voice only; others do nothing). Raises :class:`SendError`."""
        ...
