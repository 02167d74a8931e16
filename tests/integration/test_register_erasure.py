"""After a household erases its data, items a hub recorded before and delivers late are never stored again."""

from __future__ import annotations

import time

import msgspec

from cloud_sync import protocol as p
from cloud_sync.register.retention import erase_household
from tests.support.register import RunningRegister


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
