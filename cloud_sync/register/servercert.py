"""The register's TLS server certificate in its state directory, shared by every register process there.

Several processes (``serve --workers N``) use the one ``server.crt``/``server.key`` pair. The pair is written as
two files, so every write and every read of it holds an exclusive ``flock`` on ``server.lock``: a process never
loads a key with another process's certificate. A process starting finds a current certificate and serves it
(it issues one only when there is none, it is due for renewal, or it does not name the hosts); the one that
finds it due at its hourly check renews it, and the others load the new pair at their next check.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509

from cloud_sync.certs import renewal_due_in
from cloud_sync.register.ca import CertificateAuthority


@contextmanager
def locked(state_dir: Path) -> Iterator[tuple[Path, Path]]:
    """The pair's paths, with the lock held."""
    with open(state_dir / "server.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield state_dir / "server.crt", state_dir / "server.key"


def fingerprint(cert_path: Path) -> str:
    return hashlib.sha256(cert_path.read_bytes()).hexdigest()


def current_or_new(ca: CertificateAuthority, state_dir: Path, hosts: list[str], *, days: int) -> tuple[Path, Path]:
    """The pair on disk if it is usable as it is, else a new one."""
    with locked(state_dir) as (cert, key):
        if not (cert.exists() and key.exists() and _usable(cert.read_bytes(), ca, hosts)):
            ca.write_server_cert(state_dir, hosts, days=days)
        return cert, key


def renew_if_due(ca: CertificateAuthority, state_dir: Path, hosts: list[str], *, days: int, force: bool) -> bool:
    """Issue a new pair if the one on disk is due (or ``force``); True if this call issued it."""
    with locked(state_dir) as (cert, _key):
        if force or not cert.exists() or renewal_due_in(cert.read_bytes(), time.time()) <= 0:
            ca.write_server_cert(state_dir, hosts, days=days)
            return True
        return False


def _usable(pem: bytes, ca: CertificateAuthority, hosts: list[str]) -> bool:
    try:
        if not pem.endswith(ca.cert_pem) or renewal_due_in(pem, time.time()) <= 0:
            return False
        san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return False
    named = {str(n) for n in san.value.get_values_for_type(x509.DNSName)}
    named |= {str(a) for a in san.value.get_values_for_type(x509.IPAddress)}
    return all(_canonical(h) in named for h in hosts)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host
