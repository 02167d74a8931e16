"""Erasure receipts: signed by keys bound to identities, and every alteration or impostor refused."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_sync import receipts
from cloud_sync.register.ca import CertificateAuthority
from gateway.privacy import receipt_key

HOUSEHOLD, HUB = "hh_1", "hub_1"


def _hub_key_and_cert(ca: CertificateAuthority) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub")]))
        .sign(key, hashes.SHA256())
    )
    cert = ca.sign_hub_csr(
        csr.public_bytes(serialization.Encoding.PEM).decode(), hub_id=HUB, household_id=HOUSEHOLD, days=30
    )
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca")


def test_a_hub_receipt_carrying_the_registers_verifies_with_both_signers(ca: CertificateAuthority) -> None:
    theirs = ca.sign_receipt({"receipt_id": "r1", "side": "register", "erased": {"readings": 5}})
    key, cert = _hub_key_and_cert(ca)
    ours = receipts.sign(key, {"receipt_id": "r1", "side": "hub", "register": theirs}, cert_pem=cert)
    found = receipts.verify(ours, ca.cert_pem)
    assert found == receipts.Verified(f"hub:{HOUSEHOLD}:{HUB}", ("register",))
    # The register's answer beside the hub's receipt (when the hub asked first) is checked just the same.
    beside = {**receipts.sign(key, {"receipt_id": "r2"}, cert_pem=cert), "register_receipt": copy.deepcopy(theirs)}
    assert receipts.verify(beside, ca.cert_pem).embedded == ("register",)
    beside["register_receipt"]["receipt"]["erased"]["readings"] = 0
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify(beside, ca.cert_pem)


def test_altered_receipts_and_foreign_signers_are_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    key, cert = _hub_key_and_cert(ca)
    good = receipts.sign(key, {"receipt_id": "r1", "erased": {"readings": 5}}, cert_pem=cert)
    altered = copy.deepcopy(good)
    altered["receipt"]["erased"]["readings"] = 6
    with pytest.raises(receipts.ReceiptInvalid, match="does not match"):
        receipts.verify(altered, ca.cert_pem)
    # Another register's CA did not issue this hub's certificate.
    other = CertificateAuthority.load_or_create(tmp_path / "other")
    with pytest.raises(receipts.ReceiptInvalid, match="not issued"):
        receipts.verify(good, other.cert_pem)
    # A self-made certificate for a key of one's own proves nothing.
    rogue = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub")])
    now = dt.datetime.now(dt.UTC)
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rogue.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(rogue, hashes.SHA256())
    )
    forged = receipts.sign(
        rogue, good["receipt"], cert_pem=self_signed.public_bytes(serialization.Encoding.PEM).decode()
    )
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify(forged, ca.cert_pem)
    with pytest.raises(receipts.ReceiptInvalid, match="needs the register"):
        receipts.verify(good, None)
    with pytest.raises(receipts.ReceiptInvalid, match="not a signed receipt"):
        receipts.verify({"receipt": {}}, ca.cert_pem)


def test_an_unenrolled_hubs_receipt_proves_integrity_but_no_issuer() -> None:
    signed = receipts.sign(receipt_key(b"k" * 32), {"receipt_id": "r1"}, cert_pem=None)
    assert receipts.verify(signed, None).signer == "unbound"
    signed["receipt"]["receipt_id"] = "r2"
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify(signed, None)
