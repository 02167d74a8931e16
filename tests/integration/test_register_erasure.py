"""After a household erases its data, items a hub recorded before and delivers late are never stored again."""

from __future__ import annotations

import time

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloud_sync import protocol as p
from cloud_sync import receipts
from cloud_sync.register.retention import erase_household
from tests.support.register import HubIdentity, RunningRegister


def post(session: object, url: str, lane: str, items: list[p.Item], hub_id: str) -> p.IngestAck:
    body = p.encode_batch(p.IngestBatch(hub_id=hub_id, lane=lane, items=items))  # type: ignore[arg-type]
    resp = session.post(  # type: ignore[attr-defined]
        f"{url}/v1/ingest/{lane}",
        data=body,
        headers={"Content-Type": p.MSGPACK_CONTENT_TYPE, "Content-Encoding": "zstd"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return msgspec.json.decode(resp.content, type=p.IngestAck)


def reading(seq: int, ts: float) -> p.Item:
    return p.Item(seq, ts, {"device_id": "mqtt:a", "quantity": "temperature", "value": 21.0, "ts": ts})


def test_late_items_from_before_an_erasure_are_acknowledged_but_not_stored(register_any: RunningRegister) -> None:
    register = register_any
    hub = register.enroll()
    session = hub.session()
    before = time.time() - 60
    post(session, register.url, "readings", [reading(1, before), reading(2, before + 1)], hub.hub_id)
    erase_household(register.reg, hub.household_id, actor="household-app")
    assert register.items(hub.hub_id, "readings") == []
    # The hub's outbox still held seq 3 (recorded before the erasure) and now seq 4 (after it).
    ack = post(session, register.url, "readings", [reading(3, before + 2), reading(4, time.time() + 1)], hub.hub_id)
    assert ack.acked_seq == 4
    assert ack.stored == 1
    assert [seq for seq, _ in register.items(hub.hub_id, "readings")] == [4]


def _signed_by(hub: HubIdentity, body: dict[str, object]) -> dict[str, object]:
    key = serialization.load_pem_private_key(hub.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return receipts.sign(key, body, cert_pem=hub.cert.read_text())


def test_a_hubs_narrow_erasure_is_carried_out_and_impostors_are_refused(register: RunningRegister) -> None:
    hub = register.enroll()
    other = register.enroll(hub.household_id)
    session = hub.session()
    now = time.time()
    items = [p.Item(1, now, {"device_id": "mqtt:a", "quantity": "temperature", "value": 1.0, "ts": now})]
    items.append(p.Item(2, now, {"device_id": "mqtt:b", "quantity": "temperature", "value": 2.0, "ts": now}))
    post(session, register.url, "readings", items, hub.hub_id)
    rid = "a" * 32
    request = {"receipt_id": rid, "scope": "device", "target": "mqtt:a", "requested_at": now}
    url = f"{register.url}/v1/erasures"
    # Another hub's receipt, or one for another erasure, is not this hub's request.
    theirs = _signed_by(other, {"receipt_id": rid})
    refused = session.post(url, json={**request, "hub_receipt": theirs})
    assert (refused.status_code, refused.json()["error"]) == (422, "bad_receipt")
    wrong = session.post(url, json={**request, "hub_receipt": _signed_by(hub, {"receipt_id": "b" * 32})})
    assert (wrong.status_code, wrong.json()["error"]) == (422, "bad_receipt")
    tampered = _signed_by(hub, {"receipt_id": rid})
    tampered["receipt"] = {"receipt_id": rid, "extra": 1}
    assert session.post(url, json={**request, "hub_receipt": tampered}).status_code == 422
    assert session.post(url, json={**request, "scope": "everything", "hub_receipt": {}}).status_code == 422
    assert len(register.items(hub.hub_id, "readings")) == 2
    ok = session.post(url, json={**request, "hub_receipt": _signed_by(hub, {"receipt_id": rid})})
    assert ok.status_code == 200, ok.text
    assert receipts.verify(ok.json(), register.ca_file.read_bytes()).signer == "register"
    assert ok.json()["receipt"]["erased"]["readings"] == 1
    assert [b["device_id"] for _, b in register.items(hub.hub_id, "readings")] == ["mqtt:b"]
    # The household's other hub is told to erase the same device, with the register's receipt.
    [command] = [c for c in register.reg.commands(hub.household_id) if c["kind"] == "erase"]
    assert command["hub_id"] == other.hub_id and command["args"]["target"] == "mqtt:a"


def test_what_a_hub_sent_between_the_registers_erasure_and_its_own_goes_too(register_any: RunningRegister) -> None:
    register = register_any
    hub = register.enroll()
    session = hub.session()
    erase_household(register.reg, hub.household_id, actor="household-app")
    t = time.time() + 1
    # The hub has not seen the erase command yet: it still delivers what it recorded meanwhile, and its devices.
    post(session, register.url, "readings", [reading(1, t)], hub.hub_id)
    assert [s for s, _ in register.items(hub.hub_id, "readings")] == [1]
    device = [{"device_id": "mqtt:a", "kind": "sensor", "name": "Olohuone", "room": "Olohuone"}]
    assert session.post(f"{register.url}/v1/devices", json=device).json() == {"upserted": 0}
    [command] = [c for c in register.reg.commands(hub.household_id) if c["kind"] == "erase"]
    # Then the hub erases everything it held when it started (its receipt's requested_at) and reports.
    detail = {"receipt": {"receipt_id": "r", "scope": "all", "requested_at": t + 1}}
    done = session.post(f"{register.url}/v1/commands/{command['id']}/result", json={"status": "done", "detail": detail})
    assert done.status_code == 200, done.text
    assert register.items(hub.hub_id, "readings") == []
    post(session, register.url, "readings", [reading(2, t + 2)], hub.hub_id)
    assert [s for s, _ in register.items(hub.hub_id, "readings")] == [2]
    assert session.post(f"{register.url}/v1/devices", json=device).json() == {"upserted": 1}
