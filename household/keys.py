"""A member's key directory: the age identity that opens clips and the Ed25519 key that signs the member list.

Both are made on the member's own device and never leave it; only their public halves go into the list. The
directory is 0700 and each file 0600. ``seen`` records the newest version of the list this device has verified,
so a register that later shows it an older or a different history is caught.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyrage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml
from cloud_sync.privatefile import write_private

IDENTITY, SIGNING, MEMBER_ID, SEEN = "identity.age", "signing.pem", "member-id", "seen"


class KeyDirError(Exception):
    """The key directory is missing, incomplete or not private."""


@dataclass(frozen=True)
class MemberKeys:
    member_id: str
    identity: pyrage.x25519.Identity
    signing: Ed25519PrivateKey

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    @property
    def ed25519(self) -> str:
        return ml.public_hex(self.signing)

    @property
    def entry(self) -> ml.Entry:
        return ml.Entry(id=self.member_id, age=self.recipient, ed25519=self.ed25519)

    @property
    def pairing_code(self) -> str:
        return ml.pairing_code(self.ed25519)


def generate(member_id: str | None = None) -> MemberKeys:
    """Fresh keys; the id defaults to one derived from the first signing key (it stays when keys rotate)."""
    signing = Ed25519PrivateKey.generate()
    mid = member_id or "m_" + hashlib.sha256(signing.public_key().public_bytes_raw()).hexdigest()[:16]
    ml.Entry(id=mid, age=str(pyrage.x25519.Identity.generate().to_public()), ed25519="0" * 64)  # validates the id
    return MemberKeys(mid, pyrage.x25519.Identity.generate(), signing)


def save(keys: MemberKeys, directory: Path, *, overwrite: bool = False) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not overwrite and (directory / SIGNING).exists():
        raise KeyDirError(f"{directory} already holds member keys")
    pem = keys.signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(directory / IDENTITY, (str(keys.identity) + "\n").encode())
    write_private(directory / SIGNING, pem)
    write_private(directory / MEMBER_ID, (keys.member_id + "\n").encode())


def load(directory: Path) -> MemberKeys:
    try:
        if os.stat(directory).st_mode & 0o077:
            raise KeyDirError(f"{directory} is readable by others; it must be 0700")
        identity = pyrage.x25519.Identity.from_str((directory / IDENTITY).read_text().strip())
        signing = serialization.load_pem_private_key((directory / SIGNING).read_bytes(), password=None)
        member_id = (directory / MEMBER_ID).read_text().strip()
    except OSError as exc:
        raise KeyDirError(f"cannot read member keys in {directory}: {exc}") from exc
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyDirError(f"{directory / SIGNING} is not an Ed25519 key")
    return MemberKeys(member_id, identity, signing)


def load_seen(directory: Path) -> tuple[int, str] | None:
    try:
        version, digest = (directory / SEEN).read_text().split()
    except FileNotFoundError:
        return None
    return int(version), digest


def save_seen(directory: Path, version: int, digest: str) -> None:
    write_private(directory / SEEN, f"{version} {digest}\n".encode())
