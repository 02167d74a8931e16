"""Hub-side enrollment: make the hub's key and CSR, trade a one-time token for a certificate, save the identity.

The private key is created here and never leaves the hub (only the CSR is sent). Files written to ``state_dir``:
``hub.key``, ``hub.crt`` and ``register-ca.crt``, each 0600. With a pairing code, the household's root of trust is
pinned too (``member-list.json``, see :mod:`gateway.members`): the register hands over the signed member list, but
the hub takes it only if it is anchored in the key whose code the member's own device shows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_sync import memberlist as ml
from cloud_sync.certs import renewal_due_in
from cloud_sync.privatefile import write_private
from cloud_sync.protocol import EnrollRequest, EnrollResponse, RenewRequest, RenewResponse, SignedMemberList
from gateway.backoff import Backoff
from gateway.members import HubMembers

log = logging.getLogger(__name__)

FILES = ("hub.key", "hub.crt", "register-ca.crt")
TIMEOUT = (10.0, 30.0)
RENEW_RETRY_MAX_S = 6 * 3600.0


class EnrollError(Exception):
    """Enrollment failed; ``permanent`` says whether retrying as-is can help (a refused token cannot)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kotihub")]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _refusal(resp: requests.Response) -> EnrollError:
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text[:200]
    return EnrollError(f"register refused ({resp.status_code}): {detail}", permanent=resp.status_code < 500)


def enroll(
    register_url: str,
    token: str,
    state_dir: Path,
    *,
    ca_file: Path | None = None,
    force: bool = False,
    hub_name: str = "",
    pairing_code: str | None = None,
) -> EnrollResponse:
    """Enroll this hub with the register at ``register_url`` using a one-time ``token``.

    ``ca_file`` is the register CA the operator ships for the first contact; without it the system trust store
    verifies the register. Refuses to overwrite an existing identity unless ``force``. Raises
    :class:`EnrollError`. ``pairing_code`` (from a member's device) pins the household's root of trust; a member
    list the register sends that is not anchored in it fails the enrollment before anything is written.
    """
    existing = [name for name in FILES if (state_dir / name).exists()]
    if existing and not force:
        raise EnrollError(f"already enrolled ({', '.join(existing)} exist in {state_dir}); use force", permanent=True)
    key, csr_pem = _new_key_and_csr()
    body = msgspec.json.encode(EnrollRequest(token=token, csr_pem=csr_pem, hub_name=hub_name))
    url = register_url.rstrip("/") + "/v1/enroll"
    try:
        resp = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json"},
            verify=str(ca_file) if ca_file is not None else True,
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise EnrollError(f"cannot reach the register: {exc}", permanent=False) from exc
    if resp.status_code != 200:
        raise _refusal(resp)
    try:
        result = msgspec.json.decode(resp.content, type=EnrollResponse)
        cert = x509.load_pem_x509_certificate(result.cert_pem.encode())
        x509.load_pem_x509_certificate(result.ca_pem.encode())
    except (msgspec.DecodeError, ValueError) as exc:
        raise EnrollError(f"register sent a malformed enrollment response: {exc}", permanent=False) from exc
    if cert.public_key() != key.public_key():
        raise EnrollError("register returned a certificate for a different key", permanent=True)
    if pairing_code is not None and result.member_log:
        try:
            ml.verify_chain(None, result.member_log, pinned_code=ml.normalise_code(pairing_code))
        except (ml.MemberListError, ValueError) as exc:
            raise EnrollError(
                f"the register's member list does not match the pairing code: {exc}", permanent=True
            ) from exc
    state_dir.mkdir(parents=True, exist_ok=True)
    write_private(state_dir / "hub.key", _key_pem(key))
    write_private(state_dir / "hub.crt", result.cert_pem.encode())
    write_private(state_dir / "register-ca.crt", result.ca_pem.encode())
    if pairing_code is not None:
        pin_household(state_dir, pairing_code, result.member_log)
    log.info("enrolled as hub %s", result.hub_id)
    return result


def pin_household(state_dir: Path, pairing_code: str, member_log: list[SignedMemberList]) -> None:
    """Pins the household's root of trust (``member-list.json``, 0600) and anchors the member list in it."""
    try:
        HubMembers(state_dir).pin(pairing_code, member_log)
    except (ml.MemberListError, ValueError) as exc:
        raise EnrollError(f"cannot pin the household's root of trust: {exc}", permanent=True) from exc


def renew(register_url: str, state_dir: Path) -> float:
    """Replace the hub's key and certificate before the certificate expires; returns the new expiry (epoch s).

    Authenticates with the current certificate. The new key and certificate replace the old ones only after the
    register answered, each by an atomic rename, so an interrupted renewal leaves the old identity working.
    """
    finish_renewal(state_dir)
    key, csr_pem = _new_key_and_csr()
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override the register CA set below
    session.verify = str(state_dir / "register-ca.crt")
    session.cert = (str(state_dir / "hub.crt"), str(state_dir / "hub.key"))
    try:
        resp = session.post(
            register_url.rstrip("/") + "/v1/renew",
            data=msgspec.json.encode(RenewRequest(csr_pem=csr_pem)),
            headers={"Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise EnrollError(f"cannot reach the register: {exc}", permanent=False) from exc
    finally:
        session.close()
    if resp.status_code != 200:
        raise _refusal(resp)
    try:
        result = msgspec.json.decode(resp.content, type=RenewResponse)
        cert = x509.load_pem_x509_certificate(result.cert_pem.encode())
    except (msgspec.DecodeError, ValueError) as exc:
        raise EnrollError(f"register sent a malformed renewal response: {exc}", permanent=False) from exc
    if cert.public_key() != key.public_key():
        raise EnrollError("register returned a certificate for a different key", permanent=True)
    # Both new files are durable before either replaces the old pair; finish_renewal() completes a renewal
    # that a crash interrupted between the two renames.
    write_private(state_dir / "hub.key.new", _key_pem(key))
    write_private(state_dir / "hub.crt.new", result.cert_pem.encode())
    os.replace(state_dir / "hub.key.new", state_dir / "hub.key")
    finish_renewal(state_dir)
    log.info("renewed the hub certificate")
    return result.not_after


def finish_renewal(state_dir: Path) -> None:
    """Make ``hub.key``/``hub.crt`` a matching pair after an interrupted :func:`renew`; call before loading them.

    A leftover ``hub.key.new`` means the crash came before the key was replaced: the old pair is intact and the
    leftovers go. A leftover ``hub.crt.new`` that matches ``hub.key`` is moved into place.
    """
    key_new, crt_new = state_dir / "hub.key.new", state_dir / "hub.crt.new"
    if key_new.exists():
        key_new.unlink()
        crt_new.unlink(missing_ok=True)
    elif crt_new.exists():
        key = serialization.load_pem_private_key((state_dir / "hub.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(crt_new.read_bytes())
        if cert.public_key() == key.public_key():
            os.replace(crt_new, state_dir / "hub.crt")
        else:
            crt_new.unlink()
    fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames themselves must survive a power cut
    finally:
        os.close(fd)


async def renewal_loop(
    register_url: str,
    state_dir: Path,
    *,
    backoff_initial: float = 30.0,
    backoff_max: float = RENEW_RETRY_MAX_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Renew the hub's certificate by itself, well before it expires; runs until cancelled.

    The blocking renewal runs in a thread with its own connection, so the uplink's lanes (the alarm lane above
    all) are never held up: they pick up the new files at their next request (see ``RegisterClient``). Failures
    are retried with the hub's one backoff policy (capped, exponential, jittered), refusals too (an expired
    certificate is worse than a retry), each logged.
    """
    backoff = Backoff(backoff_initial, backoff_max)
    while True:
        try:
            cert_pem = await asyncio.to_thread((state_dir / "hub.crt").read_bytes)
            wait = renewal_due_in(cert_pem, clock())
            if wait > 0:
                # Re-check at least daily: the clock may jump, and the files may have been renewed by hand.
                await asyncio.sleep(min(wait, 86_400.0))
                continue
            not_after = await asyncio.to_thread(renew, register_url, state_dir)
        except (EnrollError, OSError, ValueError) as exc:
            pause = backoff.next()
            level = logging.ERROR if getattr(exc, "permanent", True) else logging.WARNING
            log.log(level, "certificate renewal failed (%s); retrying in %.0f s", exc, pause)
            await asyncio.sleep(pause)
            continue
        backoff.reset()
        log.info("certificate renewed; valid until %s", dt.datetime.fromtimestamp(not_after, dt.UTC).isoformat())
