"""The hub's key hierarchy and record encryption.

* The **master key** (KEK, 256 bits) comes from the systemd credential ``$CREDENTIALS_DIRECTORY/kotihub.key``, else
  from ``<state_dir>/master.key``, created 0600 on first start. It never enters the config, the environment, a log
  or the database. It only wraps data keys.
* One random **data key per UTC day** (an *epoch*) encrypts that day's records. It is stored wrapped by the KEK;
  destroying the wrapped copy (retention, erasure) crypto-shreds every record of that day, wherever copies of the
  ciphertext remain on flash.
* A **record** is ``header ‖ nonce ‖ ciphertext+tag`` with header = ``version (1) ‖ algorithm (1) ‖ epoch (u32 BE)``.
  The associated data is the header plus a *context* naming the record's place (table, lane, sequence), so a record
  moved to another row, sequence or epoch, or swapped with another, fails authentication.

Nonces: every record gets a fresh 96-bit nonce from ``os.urandom``. A key never repeats a nonce with more than
negligible probability because a key encrypts a bounded number of records: one epoch key seals at most one day of
group-commit frames and events (well under 2^24), so the birthday bound gives a collision probability below
2^-48, far inside NIST SP 800-38D's 2^32-invocation limit for random nonces. Counters are deliberately not used: a
sequence number can be reused after a crash rolls a transaction back, and a reused counter would repeat a nonce
with different plaintext.
"""

from __future__ import annotations

import enum
import logging
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from gateway.errors import DecryptError, KeyDestroyedError, MasterKeyError

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
HEADER = struct.Struct(">BBI")
NONCE_LEN: Final = 12
TAG_LEN: Final = 16
OVERHEAD: Final = HEADER.size + NONCE_LEN + TAG_LEN
KEY_LEN: Final = 32
CREDENTIAL_NAME: Final = "kotihub.key"
MASTER_KEY_FILE: Final = "master.key"
SECONDS_PER_EPOCH: Final = 86_400


class Algorithm(enum.IntEnum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2


ALGORITHM_NAMES: Final = {"aes-256-gcm": Algorithm.AES_256_GCM, "chacha20-poly1305": Algorithm.CHACHA20_POLY1305}


def cpu_has_aes(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises AES instructions (x86 ``flags``, Arm ``Features``). Raspberry Pi 4 does not."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features") and "aes" in value.split():
            return True
    return False


def choose_algorithm(setting: str) -> Algorithm:
    """``auto`` picks AES-256-GCM with hardware AES, else ChaCha20-Poly1305 (faster and constant-time in software)."""
    if setting == "auto":
        return Algorithm.AES_256_GCM if cpu_has_aes() else Algorithm.CHACHA20_POLY1305
    return ALGORITHM_NAMES[setting]


def epoch_of(ts: float) -> int:
    """The UTC day number of a timestamp; clamped at 0 so a clock at 1970 still yields a valid epoch."""
    return max(0, int(ts // SECONDS_PER_EPOCH))


def _aead(algorithm: int, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if algorithm == Algorithm.AES_256_GCM:
        return AESGCM(key)
    if algorithm == Algorithm.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    raise DecryptError(f"unknown algorithm {algorithm}")


def seal(key: bytes, algorithm: Algorithm, epoch: int, plaintext: bytes, context: bytes) -> bytes:
    """Encrypts ``plaintext`` as a record of ``epoch`` bound to ``context`` (its place in the store)."""
    header = HEADER.pack(FORMAT_VERSION, algorithm, epoch)
    nonce = os.urandom(NONCE_LEN)
    return header + nonce + _aead(algorithm, key).encrypt(nonce, plaintext, header + context)


def record_epoch(record: bytes) -> int:
    """The epoch named in a record's header (authenticated when the record is opened)."""
    if len(record) < OVERHEAD:
        raise DecryptError("record too short")
    version, _, epoch = HEADER.unpack_from(record)
    if version != FORMAT_VERSION:
        raise DecryptError(f"unsupported record format {version}")
    return int(epoch)


def open_record(key: bytes, record: bytes, context: bytes) -> bytes:
    """Decrypts a record sealed by :func:`seal`; any tampering, wrong key or wrong context raises DecryptError."""
    if len(record) < OVERHEAD:
        raise DecryptError("record too short")
    version, algorithm, _ = HEADER.unpack_from(record)
    if version != FORMAT_VERSION:
        raise DecryptError(f"unsupported record format {version}")
    header = record[: HEADER.size]
    nonce = record[HEADER.size : HEADER.size + NONCE_LEN]
    try:
        return _aead(algorithm, key).decrypt(nonce, record[HEADER.size + NONCE_LEN :], header + context)
    except InvalidTag:
        raise DecryptError("record failed authentication (tampered, moved, or wrong key)") from None


def _check_key_file(path: Path) -> bytes:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise MasterKeyError(f"{path} is not a regular file")
    if info.st_mode & 0o077:
        raise MasterKeyError(
            f"{path} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "refusing to start: run `chmod 600` on it"
        )
    key = path.read_bytes()
    if len(key) != KEY_LEN:
        raise MasterKeyError(f"{path} must hold exactly {KEY_LEN} bytes, found {len(key)}")
    return key


def load_master_key(state_dir: Path, credentials_dir: str | None = None, *, create: bool = True) -> bytes:
    """The hub master key: the systemd credential if present, else the 0600 file in ``state_dir``.

    A missing file is created (``create``) with 32 random bytes, written and synced before use; a file with looser
    permissions is refused rather than used, since anyone who can read it can read everything the hub stores.
    """
    credentials_dir = credentials_dir if credentials_dir is not None else os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir:
        credential = Path(credentials_dir) / CREDENTIAL_NAME
        if credential.exists():
            key = credential.read_bytes()
            if len(key) != KEY_LEN:
                raise MasterKeyError(f"credential {CREDENTIAL_NAME} must hold exactly {KEY_LEN} bytes")
            return key
    path = state_dir / MASTER_KEY_FILE
    if path.exists():
        return _check_key_file(path)
    if not create:
        raise MasterKeyError(f"no master key: neither credential {CREDENTIAL_NAME} nor {path} exists")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(KEY_LEN)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("created a new hub master key in the state directory")
    return key


class KeyRing:
    """Epoch data keys, unwrapped on demand and cached in memory.

    Storage of the wrapped keys belongs to the store: ``load_wrapped(epoch)`` returns the wrapped key or ``None``,
    ``save_wrapped(epoch, wrapped)`` must make it durable before returning (a record must never be committed under a
    key that is not itself committed). A destroyed key stays destroyed: :meth:`forget` drops it from the cache too.
    """

    def __init__(
        self,
        master_key: bytes,
        algorithm: Algorithm,
        load_wrapped: Callable[[int], bytes | None],
        save_wrapped: Callable[[int, bytes], None],
    ) -> None:
        if len(master_key) != KEY_LEN:
            raise MasterKeyError("master key must be 32 bytes")
        self._kek = master_key
        self.algorithm = algorithm
        self._load = load_wrapped
        self._save = save_wrapped
        self._keys: dict[int, bytes] = {}

    @staticmethod
    def _wrap_context(epoch: int) -> bytes:
        return b"kotihub/epoch-key|" + str(epoch).encode()

    def key_for(self, epoch: int, *, create: bool) -> bytes:
        """The data key of ``epoch``; created (and saved) if ``create`` and none exists, else KeyDestroyedError."""
        key = self._keys.get(epoch)
        if key is not None:
            return key
        wrapped = self._load(epoch)
        if wrapped is None:
            if not create:
                raise KeyDestroyedError(f"the key of epoch {epoch} does not exist (expired or erased)")
            key = os.urandom(KEY_LEN)
            self._save(epoch, seal(self._kek, self.algorithm, epoch, key, self._wrap_context(epoch)))
        else:
            key = open_record(self._kek, wrapped, self._wrap_context(epoch))
        self._keys[epoch] = key
        return key

    def seal(self, epoch: int, plaintext: bytes, context: bytes) -> bytes:
        return seal(self.key_for(epoch, create=True), self.algorithm, epoch, plaintext, context)

    def open(self, record: bytes, context: bytes) -> bytes:
        return open_record(self.key_for(record_epoch(record), create=False), record, context)

    def forget_all(self) -> None:
        """Drops every cached key; they are unwrapped again from storage when next needed."""
        self._keys.clear()

    def forget(self, epoch: int) -> None:
        """Drops a destroyed epoch's key from memory."""
        self._keys.pop(epoch, None)

    def derive_tag_key(self) -> bytes:
        """A key for keyed hashes of identifiers (device ids in the clear would be personal data)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"kotihub/id-tag/v1").derive(self._kek)
