"""When a certificate is due for renewal: one rule for the hub's client certificate and the register's server
certificate, so it is shared by both ends and imports nothing of ours."""

from __future__ import annotations

from cryptography import x509

RENEW_WHEN_LEFT = 1 / 3
"""Renew once less than this share of the certificate's lifetime is left (about 130 days of 397)."""


def renewal_due_in(cert_pem: bytes, now: float) -> float:
    """Seconds until the certificate should be renewed (0 when it is due or overdue)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return max(0.0, end - (end - start) * RENEW_WHEN_LEFT - now)
