"""The register over real TLS on 127.0.0.1, on SQLite and on PostgreSQL: enrollment, mTLS, ingest, clips,
commands, roles, audit, retention and erasure."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pyrage
import pytest
import requests
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from cloud_sync import protocol as p
from cloud_sync.enroll import EnrollError, enroll, finish_renewal, renew
from cloud_sync.register import clips, db, retention
from cloud_sync.register.auth import HubIdentity as RegHub
from cloud_sync.register.ca import CertificateAuthority
from cloud_sync.register.errors import Invalid
from gateway.members import HubMembers
from tests.support.register import HubIdentity, RunningRegister

INGEST_HEADERS = {"Content-Type": p.MSGPACK_CONTENT_TYPE, "Content-Encoding": "zstd"}


def reading(i: int, device: str = "mqtt:aa01") -> dict[str, Any]:
    return {"device_id": device, "quantity": "temperature", "value": 20.0 + i / 10, "ts": 1_760_000_000.0 + i}


def event(i: int, kind: str = "smoke", state: str = "smoke") -> dict[str, Any]:
    return {"device_id": "mqtt:smoke1", "kind": kind, "state": state, "ts": 1_760_000_000.0 + i, "attrs": {"n": i}}


def batch(hub: HubIdentity, lane: str, seqs: range | list[int], body: Any = reading) -> bytes:
    items = [p.Item(seq=s, ts=1_760_000_000.0 + s, body=body(s)) for s in seqs]
    return p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane=lane, items=items))  # type: ignore[arg-type]


def post(reg: RunningRegister, s: requests.Session, lane: str, data: bytes, **headers: str) -> requests.Response:
    return s.post(f"{reg.url}/v1/ingest/{lane}", data=data, headers={**INGEST_HEADERS, **headers}, timeout=30)


def anonymous(reg: RunningRegister) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(reg.ca_file)
    return s


def bearer(reg: RunningRegister, token: str) -> requests.Session:
    s = anonymous(reg)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def raw_zstd(payload: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(payload)


def error_of(resp: requests.Response) -> str:
    body = resp.json()
    assert set(body) >= {"error", "detail"}, body
    assert body["detail"], body
    return str(body["error"])


# --------------------------------------------------------------------------------------------------- enrollment


def test_enrollment_writes_identity_and_pins_the_household(register: RunningRegister, tmp_path: Path) -> None:
    h = register.create_household()
    _, secret = register.add_member(h, "Aino")
    state = tmp_path / "hubstate"
    code = register.pairing_code(h)
    resp = enroll(
        register.url, register.enroll_token(h), state, ca_file=register.ca_file, hub_name="olohuone", pairing_code=code
    )
    assert resp.household_id == h
    assert len(resp.member_log) == 1
    recipient = str(pyrage.x25519.Identity.from_str(secret).to_public())
    assert HubMembers(state).recipients == [recipient]
    # The hub keeps keys, not names, and only for itself; the old members.json (names, 0644) is gone.
    assert stat.S_IMODE((state / "member-list.json").stat().st_mode) == 0o600
    assert b"Aino" not in (state / "member-list.json").read_bytes()
    assert not (state / "members.json").exists()
    # Everything the hub keeps of its enrollment is for the service user only.
    for name in ("hub.key", "hub.crt", "register-ca.crt"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    cert = x509.load_pem_x509_certificate((state / "hub.crt").read_bytes())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == [p.hub_uri(h, resp.hub_id)]
    key = serialization.load_pem_private_key((state / "hub.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert (state / "register-ca.crt").read_bytes() == register.ca_file.read_bytes()
    # The register keeps only the token's hash.
    with register.reg.engine.connect() as conn:
        hashes_ = conn.execute(select(db.enroll_tokens.c.token_hash)).scalars().all()
    assert all(len(x) == 64 for x in hashes_)


def test_enrollment_token_is_one_time(register: RunningRegister, tmp_path: Path) -> None:
    h = register.create_household()
    token = register.enroll_token(h)
    enroll(register.url, token, tmp_path / "a", ca_file=register.ca_file)
    with pytest.raises(EnrollError, match="already used") as err:
        enroll(register.url, token, tmp_path / "b", ca_file=register.ca_file)
    assert err.value.permanent
    assert not (tmp_path / "b" / "hub.key").exists()


def test_enrollment_expired_and_unknown_tokens_refused(register: RunningRegister, tmp_path: Path) -> None:
    h = register.create_household()
    token = register.enroll_token(h, ttl_s=600)
    with register.reg.engine.begin() as conn:
        conn.execute(update(db.enroll_tokens).values(expires_at=time.time() - 1))
    s = anonymous(register)
    csr_pem = _csr()
    r = s.post(f"{register.url}/v1/enroll", json={"token": token, "csr_pem": csr_pem, "hub_name": ""})
    assert r.status_code == 403
    assert error_of(r) == "token_expired"
    r = s.post(f"{register.url}/v1/enroll", json={"token": "kh_enroll_" + "x" * 40, "csr_pem": csr_pem})
    assert r.status_code == 401
    assert error_of(r) == "token_unknown"


def test_enrollment_bad_input(register: RunningRegister, tmp_path: Path) -> None:
    h = register.create_household()
    token = register.enroll_token(h)
    s = anonymous(register)
    url = f"{register.url}/v1/enroll"
    r = s.post(url, json={"token": token, "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA" + "A" * 80})
    assert r.status_code == 422
    assert error_of(r) == "bad_csr"
    r = s.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert error_of(r) == "bad_json"
    r = s.post(url, json={"token": token})
    assert r.status_code == 422
    assert "csr_pem" in r.json()["detail"]
    # RSA keys are refused: hubs use EC P-256.
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = s.post(url, json={"token": token, "csr_pem": _csr(rsa_key)})
    assert r.status_code == 422
    assert "EC P-256" in r.json()["detail"]
    # None of the failures consumed the token.
    enroll(register.url, token, tmp_path / "ok", ca_file=register.ca_file)


def test_enroll_refuses_to_overwrite(register: RunningRegister, tmp_path: Path) -> None:
    hub = register.enroll(state_dir=tmp_path / "hub")
    before = hub.key.read_bytes()
    with pytest.raises(EnrollError, match="already enrolled"):
        enroll(register.url, register.enroll_token(hub.household_id), hub.state_dir, ca_file=register.ca_file)
    assert hub.key.read_bytes() == before
    again = enroll(
        register.url, register.enroll_token(hub.household_id), hub.state_dir, ca_file=register.ca_file, force=True
    )
    assert again.hub_id != hub.hub_id
    assert hub.key.read_bytes() != before


def _csr(key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------------------------------------------------- mTLS


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/ingest/readings"),
        ("POST", "/v1/devices"),
        ("GET", "/v1/commands"),
        ("POST", "/v1/commands/cmd_x/result"),
        ("PUT", "/v1/clips/c1"),
        ("PATCH", "/v1/clips/c1?offset=0"),
        ("GET", "/v1/clips/c1/status"),
        ("GET", "/v1/member-log"),
    ],
)
def test_hub_endpoints_require_client_certificate(register: RunningRegister, method: str, path: str) -> None:
    r = anonymous(register).request(method, register.url + path, data=b"{}")
    assert r.status_code == 401
    assert error_of(r) == "no_client_cert"


def test_certificate_from_foreign_ca_refused(register: RunningRegister, tmp_path: Path) -> None:
    hub = register.enroll()
    # A look-alike CA issuing a certificate for the real hub's identity.
    foreign = CertificateAuthority.load_or_create(tmp_path / "foreign")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = foreign.sign_hub_csr(_csr(key), hub_id=hub.hub_id, household_id=hub.household_id, days=30)
    (tmp_path / "f.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "f.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    s = anonymous(register)
    s.cert = (str(tmp_path / "f.crt"), str(tmp_path / "f.key"))
    try:
        r = post(register, s, "readings", batch(hub, "readings", range(3)))
    except requests.exceptions.ConnectionError:
        pass  # refused in the TLS handshake: the certificate does not chain to the register CA
    else:
        assert r.status_code == 401
    assert register.items(hub.hub_id, "readings") == []


def test_revoked_hub_refused(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    assert post(register, s, "readings", batch(hub, "readings", range(2))).status_code == 200
    register.reg.revoke_hub(hub.hub_id, actor="test")
    r = post(register, hub.session(), "readings", batch(hub, "readings", range(2, 4)))
    assert r.status_code == 403
    assert error_of(r) == "hub_revoked"


def test_hub_cannot_touch_another_household(register: RunningRegister) -> None:
    a, b = register.enroll(), register.enroll()
    assert a.household_id != b.household_id
    # A batch claiming to be hub b, sent with a's certificate.
    r = post(register, a.session(), "readings", batch(b, "readings", range(3)))
    assert r.status_code == 403
    assert error_of(r) == "wrong_hub"
    assert register.items(b.hub_id, "readings") == []
    # b's clip and b's command are invisible to a.
    rec = _clip_record("clipb", b"x" * 10)
    assert b.session().put(f"{register.url}/v1/clips/clipb", json=rec).status_code == 200
    r = a.session().get(f"{register.url}/v1/clips/clipb/status")
    assert r.status_code == 404
    (cmd,) = register.queue_command(b.household_id, "export")
    r = a.session().post(f"{register.url}/v1/commands/{cmd}/result", json={"status": "done", "detail": {}})
    assert r.status_code == 404
    assert a.session().get(f"{register.url}/v1/commands").json() == []


# -------------------------------------------------------------------------------------------------------- ingest


def test_ingest_dedup_and_acked_seq(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    r = post(reg, s, "readings", batch(hub, "readings", range(10)))
    assert r.status_code == 200
    assert r.json() == {"lane": "readings", "acked_seq": 9, "stored": 10, "duplicates": 0}
    r = post(reg, s, "readings", batch(hub, "readings", range(5, 15)))
    assert r.json() == {"lane": "readings", "acked_seq": 14, "stored": 5, "duplicates": 5}
    r = post(reg, s, "readings", batch(hub, "readings", range(10)))
    assert r.json() == {"lane": "readings", "acked_seq": 9, "stored": 0, "duplicates": 10}
    held = reg.items(hub.hub_id, "readings")
    assert [seq for seq, _ in held] == list(range(15))
    assert held[3][1] == reading(3)
    # Empty batch: nothing held, nothing acked.
    assert post(reg, s, "readings", batch(hub, "readings", [])).json()["acked_seq"] == -1


def test_ingest_lanes_are_independent(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    assert post(reg, s, "alarm", batch(hub, "alarm", range(3), event)).json()["stored"] == 3
    ev = lambda i: event(i, "motion", "on")  # noqa: E731
    assert post(reg, s, "events", batch(hub, "events", range(3), ev)).json()["stored"] == 3
    diag = lambda i: {"cpu_temp": 50.0 + i, "uptime": i, "note": "ok"}  # noqa: E731
    assert post(reg, s, "diagnostics", batch(hub, "diagnostics", range(2), diag)).json()["stored"] == 2
    clip = lambda i: _clip_record(f"clip{i}", b"z" * (i + 1))  # noqa: E731
    assert post(reg, s, "clips", batch(hub, "clips", range(2), clip)).json()["stored"] == 2
    assert [b["state"] for _, b in reg.items(hub.hub_id, "alarm")] == ["smoke"] * 3
    assert reg.items(hub.hub_id, "alarm")[1][1]["attrs"] == {"n": 1}
    assert [b["kind"] for _, b in reg.items(hub.hub_id, "events")] == ["motion"] * 3
    assert reg.items(hub.hub_id, "diagnostics")[1] == (1, diag(1))
    assert reg.items(hub.hub_id, "clips")[0][1]["clip_id"] == "clip0"


def test_ingest_bad_input_is_precise(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    good = batch(hub, "readings", range(3))

    def expect(resp: requests.Response, status: int, code: str, mentions: str = "") -> None:
        assert resp.status_code == status, resp.text
        assert error_of(resp) == code
        assert mentions in resp.json()["detail"]

    expect(post(register, s, "readings", good, **{"Content-Encoding": "gzip"}), 415, "encoding")
    expect(post(register, s, "readings", good, **{"Content-Type": "application/json"}), 415, "content_type")
    expect(post(register, s, "nosuchlane", good), 404, "no_lane")
    expect(post(register, s, "readings", b"not zstd at all"), 400, "bad_encoding")
    expect(post(register, s, "readings", raw_zstd(b"\xc1\xc1")), 400, "bad_encoding")
    expect(post(register, s, "events", good), 422, "invalid", "unknown field `quantity`")
    expect(post(register, s, "readings", batch(hub, "events", range(3))), 422, "invalid", "does not match URL lane")
    wrong = {
        "hub_id": hub.hub_id,
        "lane": "readings",
        "items": [{"seq": 1, "ts": 1.0, "body": {**reading(1), "value": "hot"}}],
    }
    expect(
        post(register, s, "readings", raw_zstd(msgspec.msgpack.encode(wrong))), 422, "invalid", "$.items[0].body.value"
    )
    extra = {"hub_id": hub.hub_id, "lane": "readings", "items": [{"seq": 1, "ts": 1.0, "body": {**reading(1), "x": 1}}]}
    expect(post(register, s, "readings", raw_zstd(msgspec.msgpack.encode(extra))), 422, "invalid", "x")
    expect(post(register, s, "readings", batch(hub, "readings", [3, 2])), 422, "invalid", "items[1].seq")
    expect(post(register, s, "readings", batch(hub, "readings", [1, 1])), 422, "invalid", "items[1].seq")
    negative = {"hub_id": hub.hub_id, "lane": "readings", "items": [{"seq": -1, "ts": 1.0, "body": reading(1)}]}
    expect(post(register, s, "readings", raw_zstd(msgspec.msgpack.encode(negative))), 422, "invalid", "seq")
    bad_clip = lambda i: {**_clip_record("c", b"1"), "sha256": "nothex"}  # noqa: E731
    expect(post(register, s, "clips", batch(hub, "clips", [1], bad_clip)), 422, "invalid", "sha256")
    # Nothing of the bad requests was stored; the good batch still goes in.
    assert register.items(hub.hub_id, "readings") == []
    assert post(register, s, "readings", good).json()["stored"] == 3


def test_ingest_size_limits(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    expect_items = p.MAX_BATCH_ITEMS + 1
    r = post(register, s, "readings", batch(hub, "readings", range(expect_items)))
    assert r.status_code == 422
    assert f"length <= {p.MAX_BATCH_ITEMS}" in r.json()["detail"]
    # A decompression bomb: tiny on the wire, beyond the inflated limit.
    bomb = zstandard.ZstdCompressor(level=3).compress(b"\0" * (p.MAX_INGEST_DECOMPRESSED_BYTES + 1))
    assert len(bomb) < 100_000
    r = post(register, s, "readings", bomb)
    assert r.status_code == 413
    assert error_of(r) == "too_large"
    # Over the compressed limit: refused from Content-Length, before the body is read.
    r = post(register, s, "readings", os.urandom(p.MAX_INGEST_COMPRESSED_BYTES + 1))
    assert r.status_code == 413
    assert str(p.MAX_INGEST_COMPRESSED_BYTES) in r.json()["detail"]
    assert register.items(hub.hub_id, "readings") == []


def test_register_restart_keeps_data_and_port(register: RunningRegister) -> None:
    hub = register.enroll()
    assert post(register, hub.session(), "readings", batch(hub, "readings", range(4))).status_code == 200
    url = register.url
    register.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        hub.session().get(f"{url}/v1/health", timeout=5)
    register.start()
    assert register.url == url
    r = post(register, hub.session(), "readings", batch(hub, "readings", range(2, 6)))
    assert r.json() == {"lane": "readings", "acked_seq": 5, "stored": 2, "duplicates": 2}


# ------------------------------------------------------------------------------------------------------- devices


def test_devices_upsert_and_validation(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    url = f"{reg.url}/v1/devices"
    d1 = {"device_id": "mqtt:aa01", "kind": "sensor", "name": "Olohuone", "model": "WSDCGQ11LM", "room": "olohuone"}
    assert s.post(url, json=[d1]).json() == {"upserted": 1}
    assert s.post(url, json=[{**d1, "room": "keittiö"}]).json() == {"upserted": 1}
    token = reg.api_token("household", hub.household_id)
    listed = bearer(reg, token).get(f"{reg.url}/v1/households/{hub.household_id}/devices").json()
    assert [(d["device_id"], d["room"]) for d in listed] == [("mqtt:aa01", "keittiö")]
    r = s.post(url, json=[{"device_id": "x"}])
    assert r.status_code == 422
    assert "kind" in r.json()["detail"]
    r = s.post(url, json=[{**d1, "device_id": ""}])
    assert r.status_code == 422
    r = s.post(url, json=[d1] * (p.MAX_DEVICES + 1))
    assert r.status_code == 422
    r = s.post(url, data=b"[" + b'"x",' * 400_000 + b'"x"]', headers={"Content-Type": "application/json"})
    assert r.status_code == 413


# --------------------------------------------------------------------------------------------------------- clips


def _clip_record(clip_id: str, data: bytes) -> dict[str, Any]:
    return {
        "clip_id": clip_id,
        "device_id": "onvif:cam1",
        "started": 1_760_000_000.0,
        "duration_s": 10.0,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "reason": "motion",
    }


def test_clip_resumable_upload_end_to_end_encrypted(register_any: RunningRegister) -> None:
    reg = register_any
    h = reg.create_household()
    _, secret = reg.add_member(h)
    hub = reg.enroll(h)
    recipients = [pyrage.x25519.Recipient.from_str(r) for r in HubMembers(hub.state_dir).recipients]
    assert len(recipients) == 1
    plaintext = os.urandom(300_000)
    ciphertext = pyrage.encrypt(plaintext, recipients)
    s = hub.session()
    url = f"{reg.url}/v1/clips/clip-001"
    rec = _clip_record("clip-001", ciphertext)
    assert s.put(url, json=rec).json() == {"offset": 0, "complete": False, "sha256": ""}
    assert s.put(url, json=rec).json() == {"offset": 0, "complete": False, "sha256": ""}  # idempotent
    first = ciphertext[:100_000]
    assert s.patch(url, params={"offset": 0}, data=first).json() == {"offset": 100_000, "complete": False, "sha256": ""}
    # A resend of the same chunk (its reply was lost) is harmless; overlapping a held prefix, only the rest counts.
    assert s.patch(url, params={"offset": 0}, data=first).json() == {"offset": 100_000, "complete": False, "sha256": ""}
    assert s.patch(url, params={"offset": 50_000}, data=ciphertext[50_000:120_000]).json()["offset"] == 120_000
    # Bytes that differ from what is held, or a gap, get 409 with the offset to resume from.
    r = s.patch(url, params={"offset": 0}, data=b"x" * 10)
    assert r.status_code == 409
    assert r.json()["offset"] == 120_000
    assert error_of(r) == "offset_mismatch"
    r = s.patch(url, params={"offset": 130_000}, data=ciphertext[130_000:140_000])
    assert r.status_code == 409
    assert r.json()["offset"] == 120_000
    assert s.get(f"{url}/status").json() == {"offset": 120_000, "complete": False, "sha256": ""}
    r = bearer(reg, reg.api_token("household", h)).get(f"{reg.url}/v1/households/{h}/clips/clip-001")
    assert r.status_code == 409
    assert error_of(r) == "incomplete"
    r = s.patch(url, params={"offset": 120_000}, data=ciphertext[120_000:] + b"extra")
    assert r.status_code == 400
    assert error_of(r) == "beyond_size"
    done = {"offset": len(ciphertext), "complete": True, "sha256": rec["sha256"]}
    assert s.patch(url, params={"offset": 120_000}, data=ciphertext[120_000:]).json() == done
    assert s.get(f"{url}/status").json() == done
    last = ciphertext[120_000:]
    assert s.patch(url, params={"offset": 120_000}, data=last).json() == done
    # Only the household gets the ciphertext, and only its members' keys open it.
    path = f"{reg.url}/v1/households/{h}/clips/clip-001"
    got = bearer(reg, reg.api_token("household", h)).get(path)
    assert got.status_code == 200
    assert got.content == ciphertext
    assert pyrage.decrypt(got.content, [pyrage.x25519.Identity.from_str(secret)]) == plaintext
    for role in ("support", "admin"):
        r = bearer(reg, reg.api_token(role)).get(path)
        assert r.status_code == 403
        assert error_of(r) == "role_forbidden"
    # A record that disagrees with the stored one is refused.
    r = s.put(url, json={**rec, "size": rec["size"] + 1})
    assert r.status_code == 409


def test_clip_digest_mismatch_discards_upload(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    data = os.urandom(5000)
    url = f"{register.url}/v1/clips/c2"
    assert s.put(url, json=_clip_record("c2", data)).status_code == 200
    tampered = bytes([data[0] ^ 1]) + data[1:]
    r = s.patch(url, params={"offset": 0}, data=tampered)
    assert r.status_code == 400
    assert error_of(r) == "digest_mismatch"
    assert s.get(f"{url}/status").json() == {"offset": 0, "complete": False, "sha256": ""}
    done = {"offset": 5000, "complete": True, "sha256": hashlib.sha256(data).hexdigest()}
    assert s.patch(url, params={"offset": 0}, data=data).json() == done


def test_completion_is_idempotent_when_the_register_died_between_last_chunk_and_completion(
    register: RunningRegister,
) -> None:
    hub = register.enroll()
    s = hub.session()
    data = os.urandom(7000)
    rec = _clip_record("c3", data)
    url = f"{register.url}/v1/clips/c3"
    assert s.put(url, json=rec).status_code == 200
    # The state a kill leaves: every byte appended and fsynced by the blob store, the completion never committed.
    register.reg.blobs.append(hub.household_id, "c3", 0, data)
    assert s.get(f"{url}/status").json() == {"offset": 7000, "complete": False, "sha256": ""}
    done = {"offset": 7000, "complete": True, "sha256": rec["sha256"]}
    assert s.put(url, json=rec).json() == done  # the hub's retry: PUT completes what is whole
    assert s.patch(url, params={"offset": 7000}, data=b"").json() == done  # and so would an empty final chunk
    assert [c["complete"] for c in clips.list_clips(register.reg, hub.household_id)] == [True]


def test_a_hub_abandons_a_partial_upload_but_never_a_complete_clip(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    partial, whole = os.urandom(5000), os.urandom(100)
    assert s.put(f"{register.url}/v1/clips/p1", json=_clip_record("p1", partial)).status_code == 200
    assert s.patch(f"{register.url}/v1/clips/p1", params={"offset": 0}, data=partial[:1000]).status_code == 200
    assert s.put(f"{register.url}/v1/clips/w1", json=_clip_record("w1", whole)).status_code == 200
    assert s.patch(f"{register.url}/v1/clips/w1", params={"offset": 0}, data=whole).json()["complete"] is True
    assert s.delete(f"{register.url}/v1/clips/p1").json() == {"abandoned": True}
    assert s.delete(f"{register.url}/v1/clips/p1").json() == {"abandoned": False}  # idempotent
    assert s.delete(f"{register.url}/v1/clips/w1").json() == {"abandoned": False}
    assert [c["clip_id"] for c in clips.list_clips(register.reg, hub.household_id)] == ["w1"]
    assert register.reg.blobs.size(hub.household_id, "p1") == 0
    other = register.enroll(hub.household_id).session()  # another hub of the household cannot drop this one's
    assert s.put(f"{register.url}/v1/clips/p2", json=_clip_record("p2", partial)).status_code == 200
    assert other.delete(f"{register.url}/v1/clips/p2").json() == {"abandoned": False}


def test_empty_clip_completes(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    url = f"{register.url}/v1/clips/empty"
    # Nothing to send: verified and complete at creation; an empty PATCH (a client that sends one) agrees.
    done = {"offset": 0, "complete": True, "sha256": hashlib.sha256(b"").hexdigest()}
    assert s.put(url, json=_clip_record("empty", b"")).json() == done
    assert s.patch(url, params={"offset": 0}, data=b"").json() == done
    r = s.put(f"{register.url}/v1/clips/empty2", json={**_clip_record("empty2", b""), "sha256": "0" * 64})
    assert r.status_code == 400
    assert error_of(r) == "digest_mismatch"
    got = bearer(register, register.api_token("household", hub.household_id)).get(
        f"{register.url}/v1/households/{hub.household_id}/clips/empty"
    )
    assert got.status_code == 200
    assert got.content == b""


def test_clip_bad_input(register: RunningRegister) -> None:
    hub = register.enroll()
    s = hub.session()
    base = f"{register.url}/v1/clips"
    r = s.put(f"{base}/c3", json=_clip_record("other", b"1"))
    assert r.status_code == 422
    assert "does not match" in r.json()["detail"]
    r = s.put(f"{base}/c3", json={**_clip_record("c3", b"1"), "size": -1})
    assert r.status_code == 422
    assert "size" in r.json()["detail"]
    r = s.put(f"{base}/bad%20id", json=_clip_record("bad id", b"1"))
    assert r.status_code == 400
    r = s.put(f"{base}/...", json=_clip_record("...", b"1"))
    assert r.status_code == 400
    assert "letter or digit" in r.json()["detail"]
    r = s.patch(f"{base}/c3", params={"offset": 0}, data=b"x")
    assert r.status_code == 404
    assert error_of(r) == "no_clip"
    r = s.patch(f"{base}/c3", params={"offset": -5}, data=b"x")
    assert r.status_code == 422
    assert "offset" in r.json()["detail"]
    r = s.patch(f"{base}/c3", data=b"x")
    assert r.status_code == 422
    assert "offset" in r.json()["detail"]
    assert s.put(f"{base}/c3", json=_clip_record("c3", b"1" * 10)).status_code == 200
    r = s.patch(f"{base}/c3", params={"offset": 0}, data=b"x" * (p.MAX_CLIP_CHUNK_BYTES + 1))
    assert r.status_code == 413


# ------------------------------------------------------------------------------------------------------ commands


def test_commands_long_poll_and_results(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    t0 = time.monotonic()
    assert s.get(f"{reg.url}/v1/commands", params={"wait": 1}).json() == []
    assert time.monotonic() - t0 >= 0.9
    token = reg.api_token("household", hub.household_id)
    got: list[Any] = []
    done = threading.Event()

    def poll() -> None:
        got.append(hub.session().get(f"{reg.url}/v1/commands", params={"wait": 25}, timeout=60).json())
        done.set()

    t = threading.Thread(target=poll)
    t0 = time.monotonic()
    t.start()
    r = bearer(reg, token).post(
        f"{reg.url}/v1/households/{hub.household_id}/commands",
        json={"kind": "restrict", "args": {"category": "camera"}},
    )
    assert r.status_code == 201
    (cid,) = r.json()["ids"]
    assert done.wait(30)
    t.join()
    assert time.monotonic() - t0 < 20  # woken by the new command, not by the 25 s timeout
    assert [(c["id"], c["kind"], c["args"]) for c in got[0]] == [(cid, "restrict", {"category": "camera"})]
    # Still pending until a result comes in: returned at once.
    assert [c["id"] for c in s.get(f"{reg.url}/v1/commands", params={"wait": 25}).json()] == [cid]
    listed = bearer(reg, token).get(f"{reg.url}/v1/households/{hub.household_id}/commands").json()
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "pending")]
    rurl = f"{reg.url}/v1/commands/{cid}/result"
    r = s.post(rurl, json={"status": "maybe"})
    assert r.status_code == 422
    assert "status" in r.json()["detail"]
    assert s.post(rurl, json={"status": "done", "detail": {"restricted": ["camera"]}}).status_code == 200
    assert s.post(rurl, json={"status": "done"}).status_code == 200  # resent result: same effect
    r = s.post(rurl, json={"status": "failed"})
    assert r.status_code == 409
    assert s.get(f"{reg.url}/v1/commands").json() == []
    listed = bearer(reg, token).get(f"{reg.url}/v1/households/{hub.household_id}/commands").json()
    assert [(c["id"], c["status"], c["detail"]) for c in listed] == [(cid, "done", {"restricted": ["camera"]})]


def test_commands_the_hub_holds_are_left_out_and_do_not_end_the_long_poll(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    (long,) = reg.queue_command(hub.household_id, "export")
    (ack,) = reg.queue_command(hub.household_id, "alarm_ack")
    url = f"{reg.url}/v1/commands"
    assert [c["id"] for c in s.get(url).json()] == [long, ack], "oldest first"
    assert [c["id"] for c in s.get(url, params={"held": [long]}).json()] == [ack]
    # Holding both: nothing to say, so the long-poll waits its whole time instead of answering at once.
    t0 = time.monotonic()
    assert s.get(url, params={"wait": 1, "held": [long, ack]}).json() == []
    assert time.monotonic() - t0 >= 0.9
    # Still pending: a hub that restarted (and holds nothing) gets them again.
    assert [c["id"] for c in s.get(url).json()] == [long, ack]
    assert len(s.get(url, params={"held": "cmd_0123456789abcdef"}).json()) == 2, "an unknown id held changes nothing"
    too_many = [f"cmd_{i:016x}" for i in range(p.MAX_HELD_COMMANDS + 1)]
    for bad in (too_many, "cmd_" + "0" * 61, "cmd_XYZ", "true", ""):
        r = s.get(url, params={"held": bad})
        assert r.status_code == 422 and "held" in r.json()["detail"], (bad, r.text)


def test_command_queue_validation(register: RunningRegister) -> None:
    hub = register.enroll()
    token = register.api_token("household", hub.household_id)
    url = f"{register.url}/v1/households/{hub.household_id}/commands"
    r = bearer(register, token).post(url, json={"kind": "format_disk"})
    assert r.status_code == 422
    assert "kind" in r.json()["detail"]
    r = bearer(register, token).post(url, json={"kind": "erase", "hub_id": "hub_other"})
    assert r.status_code == 404
    r = hub.session().get(f"{register.url}/v1/commands", params={"wait": 56})
    assert r.status_code == 422
    assert "wait" in r.json()["detail"]


def test_a_directory_entry_reaches_no_hub_until_a_member_signs_it(register: RunningRegister) -> None:
    hub = register.enroll()
    token = register.api_token("household", hub.household_id)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    r = bearer(register, token).post(
        f"{register.url}/v1/households/{hub.household_id}/members", json={"name": "Eero", "recipient": recipient}
    )
    assert r.status_code == 201
    assert hub.session().get(f"{register.url}/v1/commands").json() == []
    assert hub.session().get(f"{register.url}/v1/member-log").json() == []
    r = bearer(register, token).post(
        f"{register.url}/v1/households/{hub.household_id}/members", json={"name": "X", "recipient": "age1nope"}
    )
    assert r.status_code == 422
    assert "recipient" in r.json()["detail"]
    # A member's signature is what the hubs are sent.
    register.add_member(hub.household_id, "Aino")
    cmds = hub.session().get(f"{register.url}/v1/commands").json()
    assert [c["kind"] for c in cmds] == ["member_keys"]
    assert [v["version"] for v in hub.session().get(f"{register.url}/v1/member-log").json()] == [1]


# ---------------------------------------------------------------------------------------------- roles and audit


def test_roles_and_scoping(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    h = hub.household_id
    other = reg.create_household("Toinen")
    reg.add_member(h, "Aino")
    assert post(reg, hub.session(), "readings", batch(hub, "readings", range(3))).status_code == 200
    base = f"{reg.url}/v1/households/{h}"
    household = bearer(reg, reg.api_token("household", h))
    support = bearer(reg, reg.api_token("support"))
    admin = bearer(reg, reg.api_token("admin"))
    stranger = bearer(reg, reg.api_token("household", other))

    readings = household.get(f"{base}/readings").json()
    assert [r["seq"] for r in readings] == [0, 1, 2]
    assert household.get(f"{base}/readings", params={"since": 1_760_000_001.0}).json()[0]["seq"] == 1
    assert [m["name"] for m in support.get(f"{base}/members").json()] == ["Aino"]
    assert [x["id"] for x in support.get(f"{base}/hubs").json()] == [hub.hub_id]
    for path in ("readings", "events", "devices", "clips"):
        r = support.get(f"{base}/{path}")
        assert r.status_code == 403, path
        assert error_of(r) == "role_forbidden"
    r = stranger.get(f"{base}/members")
    assert r.status_code == 403
    assert error_of(r) == "wrong_household"
    assert anonymous(reg).get(f"{base}/members").status_code == 401
    r = bearer(reg, "kh_api_notatoken").get(f"{base}/members")
    assert r.status_code == 401
    assert error_of(r) == "bad_token"
    assert len(admin.get(f"{base}/readings").json()) == 3
    r = admin.get(f"{reg.url}/v1/households/hh_nope/members")
    assert r.status_code == 404
    assert error_of(r) == "no_household"
    r = admin.delete(f"{base}/consents")
    assert r.status_code == 405
    assert error_of(r) == "http_error"
    r = household.get(f"{base}/readings", params={"limit": 0})
    assert r.status_code == 422
    assert "limit" in r.json()["detail"]
    # A hub certificate is not an API token.
    assert hub.session().get(f"{base}/members").status_code == 401

    audit = admin.get(f"{base}/audit").json()
    reads = {(a["action"], a["actor"].split(":")[0]) for a in audit}
    assert ("members.read", "support") in reads
    assert ("readings.read", "admin") in reads
    assert ("member.add", "test") in reads
    # The household's own reads of its own data are not operator reads.
    assert ("readings.read", "household") not in reads
    assert support.get(f"{base}/audit").status_code == 403


def test_consents(register: RunningRegister) -> None:
    h = register.create_household()
    household = bearer(register, register.api_token("household", h))
    support = bearer(register, register.api_token("support"))
    url = f"{register.url}/v1/households/{h}/consents"
    assert household.get(url).json()["marketing"] is False
    assert household.put(url, json={"marketing": True}).json()["marketing"] is True
    r = support.put(url, json={"marketing": True, "marketing_ban": True})
    assert r.status_code == 422
    assert error_of(r) == "contradiction"
    assert support.put(url, json={"marketing": False, "marketing_ban": True}).json()["marketing_ban"] is True
    r = household.put(url, json={"marketing": "yes"})
    assert r.status_code == 422
    actions = [(a["action"], a["actor"].split(":")[0]) for a in register.reg.audit_entries(h)]
    assert ("consents.change", "household") in actions
    assert ("consents.change", "support") in actions


# ---------------------------------------------------------------------------------------- retention and erasure


def test_retention_purges_old_data_in_batches(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    s = hub.session()
    old = lambda i: {**reading(i), "ts": 1_000_000.0 + i}  # noqa: E731  (1970: long expired)
    assert post(reg, s, "readings", batch(hub, "readings", range(25), old)).status_code == 200
    fresh = lambda i: {**reading(i), "ts": time.time()}  # noqa: E731
    assert post(reg, s, "readings", batch(hub, "readings", range(25, 30), fresh)).status_code == 200
    summary = retention.purge_expired(reg.reg, batch=7)
    assert summary["readings"] == 25
    assert [seq for seq, _ in reg.items(hub.hub_id, "readings")] == list(range(25, 30))
    data = b"k" * 10
    recent = {**_clip_record("old1", data), "started": time.time() - 3600}
    assert s.put(f"{reg.url}/v1/clips/old1", json=recent).status_code == 200
    assert s.patch(f"{reg.url}/v1/clips/old1", params={"offset": 0}, data=data).json()["complete"] is True
    # Recorded 200 days ago, uploaded just now: its age is when it was recorded.
    late = {**_clip_record("late1", data), "started": time.time() - 200 * 86_400}
    assert s.put(f"{reg.url}/v1/clips/late1", json=late).status_code == 200
    assert s.patch(f"{reg.url}/v1/clips/late1", params={"offset": 0}, data=data).json()["complete"] is True
    assert retention.purge_expired(reg.reg)["clips"] == 1
    assert reg.reg.blobs.size(hub.household_id, "late1") == 0
    # Everything is older than the period when "now" is a year ahead.
    summary = retention.purge_expired(reg.reg, now=time.time() + 366 * 86_400)
    assert (summary["readings"], summary["clips"]) == (5, 1)
    assert reg.items(hub.hub_id, "readings") == []
    assert reg.reg.blobs.size(hub.household_id, "old1") == 0
    assert s.get(f"{reg.url}/v1/clips/old1/status").status_code == 404


def _household_with_data(reg: RunningRegister) -> tuple[HubIdentity, HubIdentity]:
    hub = reg.enroll()
    keep = reg.enroll()
    reg.add_member(hub.household_id)
    for who in (hub, keep):
        assert post(reg, who.session(), "readings", batch(who, "readings", range(5))).status_code == 200
    data = b"c" * 100
    s = hub.session()
    assert s.put(f"{reg.url}/v1/clips/e1", json=_clip_record("e1", data)).status_code == 200
    assert s.patch(f"{reg.url}/v1/clips/e1", params={"offset": 0}, data=data).json()["complete"] is True
    return hub, keep


def test_household_erasure_keeps_the_service(register_any: RunningRegister) -> None:
    reg = register_any
    hub, keep = _household_with_data(reg)
    h = hub.household_id
    token = reg.api_token("household", h)
    support = bearer(reg, reg.api_token("support"))
    assert support.post(f"{reg.url}/v1/households/{h}/erase").status_code == 403
    summary = bearer(reg, token).post(f"{reg.url}/v1/households/{h}/erase").json()
    assert (summary["readings"], summary["blobs"], summary["members"], summary["hubs_revoked"]) == (5, 1, 1, 0)
    assert reg.items(hub.hub_id, "readings") == []
    assert not any(reg.settings.blob_path.joinpath(h).glob("*"))
    assert len(reg.items(keep.hub_id, "readings")) == 5  # other households untouched
    # The hub is told to erase its own copy, and goes on working.
    cmds = hub.session().get(f"{reg.url}/v1/commands").json()
    assert [(c["id"], c["kind"]) for c in cmds] == [(summary["hub_commands"][0], "erase")]
    # A reading recorded after the erasure is stored; one recorded before it and delivered late is not.
    late = p.encode_batch(p.IngestBatch(hub_id=hub.hub_id, lane="readings", items=[
        p.Item(seq=5, ts=1_760_000_005.0, body=reading(5)),
        p.Item(seq=6, ts=time.time() + 1, body={**reading(6), "ts": time.time() + 1}),
    ]))  # fmt: skip
    ack = post(reg, hub.session(), "readings", late).json()
    assert (ack["acked_seq"], ack["stored"]) == (6, 1)
    assert bearer(reg, token).get(f"{reg.url}/v1/households/{h}/readings").status_code == 200
    assert "household.erase" in [a["action"] for a in reg.reg.audit_entries(h)]


def test_household_erasure_with_close(register_any: RunningRegister) -> None:
    reg = register_any
    hub, keep = _household_with_data(reg)
    h = hub.household_id
    token = reg.api_token("household", h)
    summary = bearer(reg, token).post(f"{reg.url}/v1/households/{h}/erase", params={"close": "true"}).json()
    assert (summary["readings"], summary["blobs"], summary["members"], summary["hubs_revoked"]) == (5, 1, 1, 1)
    assert "hub_commands" not in summary
    assert len(reg.items(keep.hub_id, "readings")) == 5
    r = post(reg, hub.session(), "readings", batch(hub, "readings", range(5, 6)))
    assert r.status_code == 403
    assert error_of(r) == "hub_revoked"
    assert bearer(reg, token).get(f"{reg.url}/v1/households/{h}/readings").status_code == 401
    assert reg.reg.audit_entries(h)[0]["action"] == "household.erase"
    assert reg.reg.household(h)["name"] == ""


# --------------------------------------------------------------------------------------------------------- misc


def test_health_and_openapi(register: RunningRegister) -> None:
    s = anonymous(register)
    assert s.get(f"{register.url}/v1/health").json() == {"status": "ok", "version": 1}
    doc = s.get(f"{register.url}/v1/openapi.json").json()
    assert "/v1/ingest/{lane}" in doc["paths"]
    assert "/v1/households/{h}/members" in doc["paths"]
    assert {"IngestBatch", "IngestAck", "EnrollRequest", "ClipRecord", "Command"} <= set(doc["components"]["schemas"])
    ingest = doc["paths"]["/v1/ingest/{lane}"]["post"]
    body = ingest["requestBody"]["content"]
    assert p.MSGPACK_CONTENT_TYPE in body
    # The readings lane's columns, their schema, and the ack's header that says the register takes them.
    assert body[p.READING_COLUMNS_CONTENT_TYPE]["schema"] == {"$ref": "#/components/schemas/ReadingColumns"}
    assert {"ReadingColumns", "SensorReadings"} <= set(doc["components"]["schemas"])
    assert p.READING_COLUMNS_HEADER in ingest["responses"]["200"]["headers"]


def test_export_streams_everything_of_the_household(register_any: RunningRegister) -> None:
    reg = register_any
    hub = reg.enroll()
    other = reg.enroll()
    h = hub.household_id
    reg.add_member(h, "Aino")
    s = hub.session()
    assert post(reg, s, "readings", batch(hub, "readings", range(7))).status_code == 200
    assert post(reg, s, "alarm", batch(hub, "alarm", range(2), event)).status_code == 200
    assert post(reg, other.session(), "readings", batch(other, "readings", range(3))).status_code == 200
    household = bearer(reg, reg.api_token("household", h))
    r = household.get(f"{reg.url}/v1/households/{h}/export")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    records = [msgspec.json.decode(line) for line in r.content.splitlines()]
    by_type: dict[str, list[Any]] = {}
    for rec in records:
        by_type.setdefault(rec["type"], []).append(rec)
    assert [x["seq"] for x in by_type["reading"]] == list(range(7))
    assert all(x["hub_id"] == hub.hub_id for x in by_type["reading"])  # nothing of the other household
    assert [x["state"] for x in by_type["event"]] == ["smoke", "smoke"]
    assert [x["name"] for x in by_type["member"]] == ["Aino"]
    assert by_type["household"][0]["id"] == h
    assert any(a["action"] == "household.export" for a in by_type["audit"])
    assert "token_hash" not in r.text
    r = bearer(reg, reg.api_token("support")).get(f"{reg.url}/v1/households/{h}/export")
    assert r.status_code == 403
    r = bearer(reg, reg.api_token("admin")).get(f"{reg.url}/v1/households/hh_nope/export")
    assert r.status_code == 404


def test_member_rectification_is_audited(register: RunningRegister) -> None:
    h = register.create_household()
    mid, _ = register.add_member(h, "Aimo")
    household = bearer(register, register.api_token("household", h))
    url = f"{register.url}/v1/households/{h}/members/{mid}"
    assert household.patch(url, json={"name": "Aino", "email": "aino@example.fi"}).status_code == 204
    members = household.get(f"{register.url}/v1/households/{h}/members").json()
    assert [(m["name"], m["email"]) for m in members] == [("Aino", "aino@example.fi")]
    r = household.patch(url, json={"email": "not an email"})
    assert r.status_code == 422
    assert "email" in r.json()["detail"]
    r = household.patch(url, json={})
    assert r.status_code == 422
    r = household.patch(f"{register.url}/v1/households/{h}/members/m_nope", json={"name": "X"})
    assert r.status_code == 404
    entry = next(a for a in register.reg.audit_entries(h) if a["action"] == "member.rectify")
    assert entry["actor"].startswith("household:")
    assert "Aino" not in entry["detail"]  # the audit says which fields changed, not their values
    assert "email" in entry["detail"]


def test_concurrent_hubs_ingest_without_errors(register_any: RunningRegister) -> None:
    reg = register_any
    household = reg.create_household()
    hubs = [reg.enroll(household) for _ in range(6)]
    errors: list[str] = []
    acks: dict[str, int] = {}

    def run(hub: HubIdentity) -> None:
        s = hub.session()
        for k in range(15):
            r = post(reg, s, "readings", batch(hub, "readings", range(k * 50, k * 50 + 50)))
            if r.status_code != 200:
                errors.append(r.text)
                return
            acks[hub.hub_id] = r.json()["acked_seq"]
            # Reads and writes of the control plane interleave with ingest.
            if s.get(f"{reg.url}/v1/commands").status_code != 200:
                errors.append("commands")

    threads = [threading.Thread(target=run, args=(hub,)) for hub in hubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert acks == {hub.hub_id: 749 for hub in hubs}
    assert all(len(reg.items(hub.hub_id, "readings")) == 750 for hub in hubs)


def test_certificate_renewal(register: RunningRegister) -> None:
    hub = register.enroll()
    old_cert, old_key = hub.cert.read_bytes(), hub.key.read_bytes()
    not_after = renew(register.url, hub.state_dir)
    assert not_after > time.time() + 300 * 86_400
    assert hub.cert.read_bytes() != old_cert
    assert hub.key.read_bytes() != old_key
    assert stat.S_IMODE(hub.key.stat().st_mode) == 0o600
    assert not list(hub.state_dir.glob("*.new"))
    cert = x509.load_pem_x509_certificate(hub.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == hub.hub_id
    assert post(register, hub.session(), "readings", batch(hub, "readings", range(3))).json()["stored"] == 3
    assert any(a["action"] == "hub.renew" for a in register.reg.audit_entries(hub.household_id))
    r = anonymous(register).post(f"{register.url}/v1/renew", json={"csr_pem": _csr()})
    assert r.status_code == 401
    r = hub.session().post(f"{register.url}/v1/renew", json={"csr_pem": "x" * 100})
    assert r.status_code == 422
    assert error_of(r) == "bad_csr"


def test_interrupted_renewal_is_finished_or_rolled_back(register: RunningRegister) -> None:
    hub = register.enroll()
    d = hub.state_dir
    # Crash before the key was replaced: leftovers are dropped, the old pair stays.
    old_key, old_cert = hub.key.read_bytes(), hub.cert.read_bytes()
    (d / "hub.key.new").write_bytes(b"partial")
    (d / "hub.crt.new").write_bytes(b"partial")
    finish_renewal(d)
    assert (hub.key.read_bytes(), hub.cert.read_bytes()) == (old_key, old_cert)
    assert not list(d.glob("*.new"))
    # Crash between the renames: the new key is in place, its certificate still waits as hub.crt.new.
    new_key = ec.generate_private_key(ec.SECP256R1())
    renewed = register.reg.renew(RegHub(hub.hub_id, hub.household_id), _csr(new_key))  # the lost reply
    issued = x509.load_pem_x509_certificate(renewed.cert_pem.encode())
    hub.key.write_bytes(
        new_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (d / "hub.crt.new").write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    finish_renewal(d)
    assert x509.load_pem_x509_certificate(hub.cert.read_bytes()) == issued
    assert post(register, hub.session(), "readings", batch(hub, "readings", range(2))).json()["stored"] == 2


def test_no_operator_can_choose_the_keys_clips_are_encrypted_to(register: RunningRegister) -> None:
    reg = register
    hub = reg.enroll()
    h = hub.household_id
    admin = bearer(reg, reg.api_token("admin"))
    household = bearer(reg, reg.api_token("household", h))
    rogue = {"kind": "member_keys", "args": {"member_keys": [{"member_id": "x", "name": "x", "recipient": "age1x"}]}}
    for who in (admin, household):
        refused = who.post(f"{reg.url}/v1/households/{h}/commands", json=rogue)
        assert refused.status_code == 403
        assert refused.json()["error"] == "command_not_allowed"
        # A kind the protocol does not have (``config`` was one until remote configuration went to the updater).
        unknown = who.post(f"{reg.url}/v1/households/{h}/commands", json={"kind": "config", "args": {}})
        assert unknown.status_code == 422 and unknown.json()["error"] == "invalid", unknown.text
    assert hub.session().get(f"{reg.url}/v1/commands").json() == []
    with pytest.raises(Invalid, match="kind must be one of"):
        reg.reg.queue_command(h, "config", {}, actor="test")
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    member = {"name": "Operaattori", "recipient": recipient}
    assert admin.post(f"{reg.url}/v1/households/{h}/members", json=member).status_code == 403
    assert household.post(f"{reg.url}/v1/households/{h}/members", json=member).status_code == 201
    # A directory entry is not a recipient: nothing reaches the hub until a member signs a list that holds it.
    assert hub.session().get(f"{reg.url}/v1/commands").json() == []
