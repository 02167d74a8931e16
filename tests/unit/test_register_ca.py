"""The register CA: key protection, persistence, CSR checks and the identity it reads back from a certificate."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cloud_sync.register.ca import CertificateAuthority
from cloud_sync.register.errors import Invalid, Unauthenticated


def csr(key: ec.EllipticCurvePrivateKey, cn: str = "x") -> str:
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return req.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_ca_created_private_and_reloaded(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.cert_pem == ca.cert_pem
    os.chmod(tmp_path / "ca.key", 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        CertificateAuthority.load_or_create(tmp_path)


def test_subject_comes_from_register_not_csr(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    cert = ca.sign_hub_csr(
        csr(ec.generate_private_key(ec.SECP256R1()), "hub_admin"), hub_id="hub_1", household_id="hh_1", days=30
    )
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hub_1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "hh_1"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert ca.hub_identity(pem) == ("hh_1", "hub_1")
    assert ca.hub_identity(pem) == ("hh_1", "hub_1")  # cached path


def test_foreign_and_malformed_certificates_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "a")
    other = CertificateAuthority.load_or_create(tmp_path / "b")
    foreign = other.sign_hub_csr(csr(ec.generate_private_key(ec.SECP256R1())), hub_id="h", household_id="x", days=1)
    with pytest.raises(Unauthenticated, match="not issued by this register"):
        ca.hub_identity(foreign.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(Unauthenticated):
        ca.hub_identity(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    # The server certificate is ours but names no hub.
    cert_path, _ = ca.write_server_cert(tmp_path / "a", ["localhost", "127.0.0.1"])
    server_pem = cert_path.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    with pytest.raises(Unauthenticated, match="no hub identity"):
        ca.hub_identity(server_pem)


def test_bad_csrs(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(Invalid, match="not a PEM"):
        ca.sign_hub_csr("garbage", hub_id="h", household_id="x", days=1)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    )
    rsa_csr = req.sign(rsa_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(Invalid, match="P-256"):
        ca.sign_hub_csr(rsa_csr, hub_id="h", household_id="x", days=1)
    good = ca.sign_hub_csr(csr(ec.generate_private_key(ec.SECP384R1())), hub_id="h", household_id="x", days=1)
    assert isinstance(good.public_key(), ec.EllipticCurvePublicKey)
