"""The register's certificate authority: created on first start, signs hub CSRs and the server certificate.

The CA key is a 0600 file in the state directory and is never logged or sent anywhere. A hub certificate names
the hub in CN, its household in O, and both in a SAN URI (:func:`cloud_sync.protocol.hub_uri`); that subject is
what the register trusts, never anything the hub puts in its CSR.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_sync import receipts
from cloud_sync.privatefile import write_private
from cloud_sync.protocol import hub_uri, parse_hub_uri
from cloud_sync.register.errors import Invalid, Unauthenticated

log = logging.getLogger(__name__)

_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateAuthority:
    """The CA in ``state_dir`` (``ca.key`` 0600, ``ca.crt``)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._cache: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, state_dir: Path, *, name: str = "kotihub register CA") -> CertificateAuthority:
        state_dir.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = state_dir / "ca.key", state_dir / "ca.crt"
        if key_path.exists():
            if key_path.stat().st_mode & 0o077:
                raise PermissionError(f"{key_path} is readable by others; chmod 600 it")
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        log.info("created a new register CA in %s", state_dir)
        return cls(key, cert)

    def sign_receipt(self, body: dict[str, Any]) -> dict[str, Any]:
        """An erasure receipt signed by the register (the CA key: every hub and app already trusts its cert)."""
        return receipts.sign(self._key, body, cert_pem=self.cert_pem.decode())

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )

    def sign_hub_csr(self, csr_pem: str, *, hub_id: str, household_id: str, days: int) -> x509.Certificate:
        """Issue a client certificate for the key in ``csr_pem``; raises :class:`Invalid` for a bad CSR."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise Invalid(f"csr_pem is not a PEM certificate signing request: {exc}", code="bad_csr") from exc
        if not csr.is_signature_valid:
            raise Invalid("csr_pem: the CSR's signature does not verify", code="bad_csr")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, _ACCEPTED_CURVES):
            raise Invalid("csr_pem: the key must be EC P-256 or P-384", code="bad_csr")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, hub_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, household_id),
            ]
        )
        return (
            self._builder(subject, public_key, days)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(hub_uri(household_id, hub_id))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def write_server_cert(self, directory: Path, hosts: list[str], *, days: int = 90) -> tuple[Path, Path]:
        """Issue a TLS server certificate for ``hosts`` (names or IPs); returns ``(cert_path, key_path)``."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        cert = (
            self._builder(subject, key.public_key(), days)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = directory / "server.crt", directory / "server.key"
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem)
        return cert_path, key_path

    def hub_identity(self, cert_pem: bytes) -> tuple[str, str]:
        """``(household_id, hub_id)`` of a client certificate (PEM) the TLS layer already verified.

        Checked again here (issuer signature, validity, the SAN URI agreeing with CN/O) so that the app never
        trusts a certificate from a server set up without client verification. Results are cached by DER.
        """
        with self._lock:
            hit = self._cache.get(cert_pem)
            if hit is not None:
                self._cache.move_to_end(cert_pem)
        if hit is None:
            hit = self._check(cert_pem)
            with self._lock:
                self._cache[cert_pem] = hit
                if len(self._cache) > 4096:
                    self._cache.popitem(last=False)
        return hit

    def _check(self, cert_pem: bytes) -> tuple[str, str]:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            cert.verify_directly_issued_by(self.cert)
        except Exception as exc:  # any parse or signature failure means: not one of ours
            raise Unauthenticated("client certificate was not issued by this register", code="bad_cert") from exc
        now = _now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Unauthenticated("client certificate is expired or not yet valid", code="bad_cert")
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        for uri in uris:
            parsed = parse_hub_uri(uri)
            if parsed is not None:
                return parsed
        raise Unauthenticated("client certificate carries no hub identity", code="bad_cert")


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
