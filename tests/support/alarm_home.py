"""A household on a register in this process (no HTTP) for the alarm's transaction: a hub, members with contacts,
devices, and alarm batches sent through ``ingest.ingest_body`` on the alarm lane's pool as the route sends them.
Used by ``tests/integration/test_register_alarm_txn.py`` and ``bench/alarm_roundtrips.py``."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
from sqlalchemy import Connection, insert

from cloud_sync import protocol as p
from cloud_sync.register import db, ingest
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.notify import contacts
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings

ACTOR = "test:alarm-home"
DEVICES = (
    p.DeviceRecord(device_id="z2m:smoke-hall", kind="smoke_detector", name="Hall detector", room="Eteinen"),
    p.DeviceRecord(device_id="z2m:smoke-kitchen", kind="smoke_detector", name="Kitchen detector"),
    p.DeviceRecord(device_id="z2m:gateway", kind="gateway", name="", room=""),
)
"""Devices the register knows (a room; a name only; neither); a device id not among them has no row."""


@dataclass
class AlarmHome:
    registry: Registry
    hub: HubIdentity

    def send(self, items: list[p.Item], *, pipelined: bool = True) -> p.IngestAck:
        body = p.encode_batch(p.IngestBatch(hub_id=self.hub.hub_id, lane="alarm", items=items))
        reg = self.registry

        def check(conn: Connection) -> None:
            reg.check_hub(self.hub, conn=conn)

        return ingest.ingest_body(
            reg, self.hub, "alarm", body, engine=reg.urgent_engine, check=check, pipelined=pipelined
        )


def open_registry(state_dir: Path, db_url: str) -> Registry:
    """A registry as the alarm listener opens it (its alarm pool hands out connections without a ping)."""
    return Registry(Settings(state_dir=state_dir, db_url=db_url), urgent_pre_ping=False)


def make_home(registry: Registry, *, members: int = 3) -> AlarmHome:
    """A household with ``members`` members (the first without contact details, the others with a phone and an
    e-mail in reverse call order), a hub and :data:`DEVICES`."""
    household = registry.create_household("Hälytyskoti", actor=ACTOR)
    hub = HubIdentity(hub_id=f"hub_{secrets.token_hex(6)}", household_id=household, cert_sha256=secrets.token_hex(32))
    with registry.engine.begin() as conn:
        conn.execute(
            insert(db.hubs).values(
                id=hub.hub_id,
                household_id=household,
                name="hub",
                cert_sha256=hub.cert_sha256,
                enrolled_at=time.time(),
                revoked=False,
            )
        )
    for i in range(members):
        age = str(pyrage.x25519.Identity.generate().to_public())
        member = registry.add_member(household, f"Jäsen {i}", age, phone=f"+35840111000{i}", actor=ACTOR)
        if i:
            contact = contacts.Contact(phone=f"+35850222000{i}", email=f"m{i}@example.fi", call_order=members - i)
            contacts.set_contact(registry, household, member.member_id, contact, actor=ACTOR)
    ingest.upsert_devices(registry, hub, list(DEVICES))
    return AlarmHome(registry, hub)


def smoke(seq: int, device_id: str = "z2m:smoke-hall", state: str = "smoke", **attrs: Any) -> p.Item:
    t = time.time()
    body = {"device_id": device_id, "kind": "smoke", "state": state, "ts": t, "attrs": attrs}
    return p.Item(seq=seq, ts=t, body=body)
