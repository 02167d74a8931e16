"""Certificates over real TLS: a renewal retires the old hub certificate, the hub renews by itself while its alarm
lane keeps flowing, and the register's own server certificate rotates without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import time
from pathlib import Path

import requests
from cryptography import x509

from cloud_sync.enroll import renew, renewal_due_in, renewal_loop
from cloud_sync.register.auth import HubIdentity as RegHub
from cloud_sync.uplink import HubIdentity, Uplink
from gateway.model import Event, EventKind
from tests.integration.test_register import INGEST_HEADERS, _csr, anonymous, batch, error_of
from tests.integration.test_uplink import T0, running, until, uplink_config
from tests.support.register import HubIdentity as EnrolledHub
from tests.support.register import RunningRegister
from tests.support.stores import open_store

DAY = 86_400.0


def stolen_copy(hub: EnrolledHub, tmp_path: Path) -> requests.Session:
    """A session with a copy of the hub's certificate and key, taken before a renewal (a thief's, or a backup's)."""
    stolen = tmp_path / "stolen"
    shutil.copytree(hub.state_dir, stolen)
    thief = requests.Session()
    thief.trust_env = False
    thief.cert = (str(stolen / "hub.crt"), str(stolen / "hub.key"))
    thief.verify = str(stolen / "register-ca.crt")
    return thief


def _ingest(reg: RunningRegister, s: requests.Session, hub: EnrolledHub, seqs: range) -> requests.Response:
    return s.post(f"{reg.url}/v1/ingest/readings", data=batch(hub, "readings", seqs), headers=INGEST_HEADERS)


def test_renewal_retires_the_old_certificate(register: RunningRegister, tmp_path: Path) -> None:
    hub = register.enroll()
    thief = stolen_copy(hub, tmp_path)
    # A connection opened with the old certificate before the renewal, kept alive across it.
    assert _ingest(register, thief, hub, range(1, 2)).status_code == 200

    renew(register.url, hub.state_dir)
    # Until the hub first uses its new certificate the old one still works (a lost reply must not lock it out).
    assert _ingest(register, thief, hub, range(2, 3)).status_code == 200
    assert _ingest(register, hub.session(), hub, range(3, 4)).status_code == 200

    # From the new certificate's first use on, the old one is refused on every request, pooled or new.
    kept = _ingest(register, thief, hub, range(4, 5))
    assert kept.status_code == 401 and error_of(kept) == "cert_retired"
    fresh = requests.Session()
    fresh.trust_env, fresh.verify = False, thief.verify
    fresh.cert = thief.cert
    r = fresh.post(f"{register.url}/v1/renew", json={"csr_pem": "x"})
    assert r.status_code == 401 and error_of(r) == "cert_retired"
    assert [seq for seq, _ in register.items(hub.hub_id, "readings")] == [1, 2, 3]
    actions = [a["action"] for a in register.reg.audit_entries(hub.household_id)]
    assert "hub.cert_retired" in actions
    # The new certificate renews again, and that renewal retires it in turn.
    renew(register.url, hub.state_dir)
    assert _ingest(register, hub.session(), hub, range(4, 5)).status_code == 200


def test_renewal_through_the_command_long_poll_retires_the_old_certificate(
    register_any: RunningRegister, tmp_path: Path
) -> None:
    """The long-poll checks the hub with its own read of ``commands`` (one connection): a renewed certificate's
    first use there is promoted as anywhere else, and the old one is refused from then on."""
    register = register_any
    hub = register.enroll()
    thief = stolen_copy(hub, tmp_path)
    url = f"{register.url}/v1/commands"
    assert thief.get(url, params={"wait": 0}).status_code == 200
    renew(register.url, hub.state_dir)
    assert thief.get(url, params={"wait": 0}).status_code == 200
    assert hub.session().get(url, params={"wait": 0}).status_code == 200
    kept = thief.get(url, params={"wait": 0})
    assert kept.status_code == 401 and error_of(kept) == "cert_retired"
    actions = [a["action"] for a in register.reg.audit_entries(hub.household_id)]
    assert actions.count("hub.cert_retired") == 1
    assert hub.session().get(url, params={"wait": 0}).status_code == 200


def test_a_lost_renewal_reply_costs_nothing(register: RunningRegister) -> None:
    hub = register.enroll()
    lost = register.reg.renew(RegHub(hub.hub_id, hub.household_id), _csr())  # issued, but the reply never came
    assert _ingest(register, hub.session(), hub, range(1, 2)).status_code == 200
    renew(register.url, hub.state_dir)  # the hub tries again with its old certificate
    assert _ingest(register, hub.session(), hub, range(2, 3)).status_code == 200
    # The certificate from the lost reply was never current and never will be.
    fp = x509.load_pem_x509_certificate(lost.cert_pem.encode())
    assert fp.serial_number != x509.load_pem_x509_certificate(hub.cert.read_bytes()).serial_number


def test_renewal_is_due_once_a_third_of_the_lifetime_is_left(register: RunningRegister) -> None:
    hub = register.enroll()
    cert = x509.load_pem_x509_certificate(hub.cert.read_bytes())
    lifetime = cert.not_valid_after_utc.timestamp() - cert.not_valid_before_utc.timestamp()
    due_at = cert.not_valid_after_utc.timestamp() - lifetime / 3
    assert renewal_due_in(hub.cert.read_bytes(), time.time()) > 200 * DAY
    assert abs(renewal_due_in(hub.cert.read_bytes(), due_at - 10) - 10.0) < 1e-3
    assert renewal_due_in(hub.cert.read_bytes(), due_at + 1) == 0.0


async def test_the_hub_renews_by_itself_and_the_alarm_lane_keeps_flowing(register: RunningRegister) -> None:
    hub = register.enroll()
    old_serial = x509.load_pem_x509_certificate(hub.cert.read_bytes()).serial_number
    skew = [300 * DAY]  # the hub's clock as the renewal loop sees it: past the renewal point

    def clock() -> float:
        return time.time() + skew[0]

    async with open_store(hub.state_dir) as store:
        uplink = Uplink(store, uplink_config(register.url), HubIdentity(hub.state_dir))
        async with running(uplink):
            for i in range(1, 6):
                await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0 + i))
            await until(lambda: len(register.items(hub.hub_id, "alarm")) == 5, what="alarms before renewal")
            renewer = asyncio.create_task(renewal_loop(register.url, hub.state_dir, backoff_initial=0.1, clock=clock))
            try:
                await until(
                    lambda: x509.load_pem_x509_certificate(hub.cert.read_bytes()).serial_number != old_serial,
                    what="renewal",
                )
                skew[0] = 0.0
                # Alarms raised right after the renewal arrive promptly, each lane moving to the new certificate.
                sent = time.monotonic()
                for i in range(6, 11):
                    await store.add_event(Event(device_id="mqtt:s", kind=EventKind.SMOKE, state="smoke", ts=T0 + i))
                await until(lambda: len(register.items(hub.hub_id, "alarm")) == 10, what="alarms after renewal")
                assert time.monotonic() - sent < 10.0
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
        assert uplink.status["alarm"].last_error is None
    assert [seq for seq, _ in register.items(hub.hub_id, "alarm")] == list(range(1, 11))
    assert "hub.cert_retired" in [a["action"] for a in register.reg.audit_entries(hub.household_id)]


def _served_cert(reg: RunningRegister) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(reg.ca_file))
    with (
        socket.create_connection(("127.0.0.1", reg.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_server_certificate_rotates_without_downtime(register: RunningRegister) -> None:
    before = _served_cert(register)
    kept = anonymous(register)
    assert kept.get(f"{register.url}/v1/health").status_code == 200
    server = register._server
    assert server is not None and server.loop is not None
    rotated = asyncio.run_coroutine_threadsafe(server.rotate_server_cert(), server.loop).result(30)
    after = _served_cert(register)
    assert after.serial_number == rotated.serial_number != before.serial_number
    # The connection opened before the rotation carries on, and new ones verify against the same CA.
    assert kept.get(f"{register.url}/v1/health").status_code == 200
    assert anonymous(register).get(f"{register.url}/v1/health").status_code == 200
