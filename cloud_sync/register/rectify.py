"""Rectification of a device's name and room by the household (the privacy notice's right to have data corrected).

The hub is where names live (it sends its device list to the register), so a correction made here is also sent
to the device's hub as a ``rename`` command; until the hub has carried it out, the register already shows the
corrected name, and the hub's next device list carries it too.
"""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import and_, select, update

from cloud_sync.register import db
from cloud_sync.register.errors import Invalid, NotFound
from cloud_sync.register.registry import Registry, write_audit

MAX_NAME: Final = 64
"""The hub's limit for names and rooms (gateway control ``rename``)."""


def _clean(label: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_NAME or any(ord(ch) < 32 for ch in value):
        raise Invalid(f"{label} must be at most {MAX_NAME} printable characters", code=f"bad_{label}")
    return value


def rectify_device(registry: Registry, household_id: str, device_id: str, *, name: str, room: str, actor: str) -> str:
    """Correct a device's name and room; audited with the names of the changed fields only. Returns the id of the
    ``rename`` command queued for the device's hub ("" when nothing changed)."""
    name, room = _clean("name", name), _clean("room", room)
    d = db.devices.c
    where = and_(d.household_id == household_id, d.device_id == device_id)
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        row = conn.execute(select(d.hub_id, d.name, d.room).where(where)).first()
        if row is None:
            raise NotFound(f"no device {device_id!r} in this household", code="no_device")
        changed = [f for f, old, new in (("name", row.name, name), ("room", row.room, room)) if old != new]
        if not changed:
            return ""
        conn.execute(update(db.devices).where(where).values(name=name, room=room, updated_at=time.time()))
        write_audit(conn, actor, "device.rectify", household_id, device_id, fields=changed)
        hub_id = str(row.hub_id)
    args = {"device_id": device_id, "name": name, "room": room}
    return registry.queue_command(household_id, "rename", args, hub_id=hub_id, actor=actor)[0]
