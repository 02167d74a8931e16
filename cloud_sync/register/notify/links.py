"""Signed, expiring acknowledgement links (itsdangerous) with a key kept in the register's state directory.

A link names one alarm and one member and is valid for :data:`LINK_TTL_S`. Opening it (GET) only shows a button:
link previewers in messaging apps fetch links, and a preview must not acknowledge a smoke alarm. The button POSTs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from cloud_sync.register.errors import Forbidden

LINK_TTL_S: Final = 24 * 3600
_SALT: Final = "kotihub.alarm-ack.v1"


def load_key(state_dir: Path) -> bytes:
    path = state_dir / "notify-link.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    # Two register processes starting at once: the first key wins, both use it.
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)
    os.unlink(tmp)
    return path.read_bytes()


class _SignedAt(TimestampSigner):
    """Signs with a given time: a job's link is the same in every attempt, so a resent text is the same text and
    the provider lookup after a crash can recognise it."""

    def __init__(self, *args: object, at: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._at = at

    def get_timestamp(self) -> int:
        return self._at


class Links:
    def __init__(self, key: bytes, public_url: str) -> None:
        self._key = key
        self._s = URLSafeTimedSerializer(key, salt=_SALT)
        self._base = public_url.rstrip("/")

    def token(self, alarm_id: str, member_id: str, *, at: float) -> str:
        s = URLSafeTimedSerializer(self._key, salt=_SALT, signer=_SignedAt, signer_kwargs={"at": int(at)})
        return s.dumps([alarm_id, member_id])

    def url(self, alarm_id: str, member_id: str, *, at: float) -> str:
        """The link for one alarm and member, valid for :data:`LINK_TTL_S` from ``at``."""
        return f"{self._base}/v1/ack/{self.token(alarm_id, member_id, at=at)}"

    def read(self, token: str, *, max_age: int = LINK_TTL_S) -> tuple[str, str]:
        """``(alarm_id, member_id)``; :class:`Forbidden` if forged or expired (the reply says which)."""
        try:
            alarm_id, member_id = self._s.loads(token, max_age=max_age)
        except SignatureExpired:
            raise Forbidden("this acknowledgement link has expired", code="link_expired") from None
        except (BadSignature, ValueError, TypeError):
            raise Forbidden("this acknowledgement link is not valid", code="link_invalid") from None
        return str(alarm_id), str(member_id)
