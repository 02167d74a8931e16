"""Master key handling and algorithm choice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import crypto
from gateway.errors import KeyDestroyedError, MasterKeyError


def test_master_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = crypto.load_master_key(tmp_path, credentials_dir="")
    path = tmp_path / crypto.MASTER_KEY_FILE
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert crypto.load_master_key(tmp_path, credentials_dir="") == key


def test_loose_permissions_are_refused(tmp_path: Path) -> None:
    crypto.load_master_key(tmp_path, credentials_dir="")
    (tmp_path / crypto.MASTER_KEY_FILE).chmod(0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        crypto.load_master_key(tmp_path, credentials_dir="")


def test_wrong_length_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / crypto.MASTER_KEY_FILE
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match="32 bytes"):
        crypto.load_master_key(tmp_path, credentials_dir="")


def test_systemd_credential_wins_over_the_state_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    secret = os.urandom(32)
    (creds / crypto.CREDENTIAL_NAME).write_bytes(secret)
    assert crypto.load_master_key(tmp_path / "state", credentials_dir=str(creds)) == secret
    assert not (tmp_path / "state" / crypto.MASTER_KEY_FILE).exists()


def test_missing_key_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="no master key"):
        crypto.load_master_key(tmp_path, credentials_dir="", create=False)


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("processor\t: 0\nflags\t\t: fpu vme sse2 aes avx\n", True),
        ("processor\t: 0\nflags\t\t: fpu vme sse2 avx\n", False),
        # Raspberry Pi 4 (Cortex-A72 without the crypto extension)
        ("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n", False),
        # Raspberry Pi 5 (Cortex-A76)
        ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n", True),
    ],
)
def test_cpu_aes_detection(cpuinfo: str, expected: bool) -> None:
    assert crypto.cpu_has_aes(cpuinfo) is expected


def test_explicit_algorithm_setting() -> None:
    assert crypto.choose_algorithm("chacha20-poly1305") is crypto.Algorithm.CHACHA20_POLY1305
    assert crypto.choose_algorithm("aes-256-gcm") is crypto.Algorithm.AES_256_GCM


def test_keyring_creates_saves_and_refuses_destroyed_epochs() -> None:
    vault: dict[int, bytes] = {}
    ring = crypto.KeyRing(os.urandom(32), crypto.Algorithm.AES_256_GCM, vault.get, vault.__setitem__)
    record = ring.seal(20000, b"hello", b"ctx")
    assert 20000 in vault and b"hello" not in vault[20000]
    again = crypto.KeyRing(ring._kek, crypto.Algorithm.AES_256_GCM, vault.get, vault.__setitem__)
    assert again.open(record, b"ctx") == b"hello"
    del vault[20000]
    again.forget(20000)
    with pytest.raises(KeyDestroyedError):
        again.open(record, b"ctx")


def test_epoch_of_is_the_utc_day_and_never_negative() -> None:
    assert crypto.epoch_of(0) == 0
    assert crypto.epoch_of(-5) == 0
    assert crypto.epoch_of(86_399.9) == 0
    assert crypto.epoch_of(86_400) == 1
