"""Erasure receipts: signed statements of what was destroyed, verifiable by a household member.

A receipt is ``{"receipt": body, "signature": ..., "certificate": PEM, "algorithm": ...}``: the signature is
ECDSA P-256 with SHA-256 over the body as canonical JSON (sorted keys, no spaces), made with the key of the
certificate it carries. The signer is bound to an identity by that certificate:

* a hub signs with its mTLS key, whose certificate the register's CA issued at enrollment (its SAN names the
  household and the hub), so a receipt proves *which* hub issued it;
* the register signs with its CA key, and carries the CA certificate itself.

Both verify against the register's CA certificate alone (``register-ca.crt``, which every hub and the household's
app hold). A hub that was never enrolled signs with an Ed25519 key derived from its master key and carries only
the public key: such a receipt proves integrity but not issuer, and :func:`verify` says so.
A hub's receipt may carry the register's signed receipt for the same erasure — inside its body (``"register"``)
when the register asked first, beside it (``"register_receipt"``) when the hub did — which is verified too.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.protocol import parse_hub_uri

ECDSA: Final = "ECDSA-P256-SHA256 over the receipt as canonical JSON (sorted keys, no spaces)"
ED25519: Final = "Ed25519 over the receipt as canonical JSON (sorted keys, no spaces)"


class ReceiptInvalid(ValueError):
    """The receipt was altered, or its signer is not who it claims to be."""


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(
    key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey, body: dict[str, Any], *, cert_pem: str | None
) -> dict[str, Any]:
    """``body`` signed by ``key``; ``cert_pem`` is the key's certificate (None only for an unenrolled hub)."""
    data = canonical(body)
    if isinstance(key, Ed25519PrivateKey):
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "receipt": body,
            "signature": base64.b64encode(key.sign(data)).decode(),
            "public_key": base64.b64encode(public).decode(),
            "algorithm": ED25519,
        }
    if cert_pem is None:
        raise ValueError("an ECDSA receipt carries its signer's certificate")
    return {
        "receipt": body,
        "signature": base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode(),
        "certificate": cert_pem,
        "algorithm": ECDSA,
    }


@dataclass(frozen=True)
class Verified:
    signer: str
    """``register``, ``hub:<household>:<hub>``, or ``unbound`` (integrity only: an unenrolled hub's key)."""
    embedded: tuple[str, ...] = ()
    """Signers of receipts embedded in this one, each verified too."""


def verify(signed: dict[str, Any], ca_pem: bytes | None) -> Verified:
    """Checks the signature and who made it; raises :class:`ReceiptInvalid` otherwise."""
    try:
        body = signed["receipt"]
        signature = base64.b64decode(signed["signature"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptInvalid(f"not a signed receipt: {exc}") from exc
    if not isinstance(body, dict):
        raise ReceiptInvalid("not a signed receipt: the body is not an object")
    data = canonical(body)
    if "certificate" in signed:
        signer = _verify_ecdsa(str(signed["certificate"]).encode(), signature, data, ca_pem)
    elif "public_key" in signed:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(signed["public_key"])).verify(signature, data)
        except (InvalidSignature, ValueError) as exc:
            raise ReceiptInvalid("the signature does not match the receipt") from exc
        signer = "unbound"
    else:
        raise ReceiptInvalid("the receipt names no signer")
    embedded: list[str] = []
    # The register's receipt: inside the body when the register asked first, beside it when the hub did.
    for inner in (body.get("register"), signed.get("register_receipt")):
        if inner is not None:
            if not isinstance(inner, dict):
                raise ReceiptInvalid("the register's receipt is not an object")
            embedded.append(verify(inner, ca_pem).signer)
    return Verified(signer, tuple(embedded))


def _verify_ecdsa(cert_pem: bytes, signature: bytes, data: bytes, ca_pem: bytes | None) -> str:
    if ca_pem is None:
        raise ReceiptInvalid("verifying a signer needs the register's CA certificate")
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ReceiptInvalid(f"unreadable certificate: {exc}") from exc
    if cert == ca:
        signer = "register"
    else:
        try:
            cert.verify_directly_issued_by(ca)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as exc:
            raise ReceiptInvalid("the signer's certificate was not issued by this register") from exc
        ids = [parse_hub_uri(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
        found = [i for i in ids if i is not None]
        if not found:
            raise ReceiptInvalid("the signer's certificate names no hub")
        signer = f"hub:{found[0][0]}:{found[0][1]}"
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ReceiptInvalid("the signer's key is not an EC key")
    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ReceiptInvalid("the signature does not match the receipt") from exc
    return signer
