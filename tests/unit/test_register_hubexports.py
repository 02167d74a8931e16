"""The register's side of the hub's copy: only the hub the export command went to uploads, resumably and exactly
once, digest-checked; the household reads it (audited) for 7 days, then it is gone, blob first."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from cloud_sync import protocol as p
from cloud_sync.register import db, hubexports
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.clips import OffsetConflict
from cloud_sync.register.errors import NotFound, RegisterError
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(Settings(state_dir=tmp_path / "register"))
    try:
        yield r
    finally:
        r.close()


def _command(reg: Registry, household: str, hub_id: str, kind: str = "export") -> str:
    cid = f"cmd_{os.urandom(8).hex()}"
    with reg.engine.begin() as conn:
        conn.execute(
            insert(db.commands).values(
                id=cid, household_id=household, hub_id=hub_id, kind=kind, args={}, issued_at=time.time(),
                issued_by="test", status="pending",
            )
        )  # fmt: skip
    return cid


def _record(data: bytes) -> p.ExportRecord:
    return p.ExportRecord(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_only_the_hub_asked_uploads_and_only_once(reg: Registry) -> None:
    h = reg.create_household("Koti", actor="test")
    hub, stranger = HubIdentity("hub_a", h), HubIdentity("hub_b", h)
    cid = _command(reg, h, "hub_a")
    data = random.Random(7).randbytes(3000)
    with pytest.raises(NotFound):
        hubexports.create(reg, stranger, cid, _record(data))
    with pytest.raises(NotFound):
        hubexports.create(reg, hub, _command(reg, h, "hub_a", kind="restrict"), _record(data))
    with pytest.raises(NotFound):
        hubexports.create(reg, HubIdentity("hub_a", "hh_other"), cid, _record(data))
    assert hubexports.create(reg, hub, cid, _record(data)).offset == 0
    assert hubexports.append(reg, hub, cid, 0, data[:1000]).offset == 1000
    # A lost reply: the same chunk again overlaps what is held and only the rest is appended.
    assert hubexports.append(reg, hub, cid, 0, data[:1500]).offset == 1500
    with pytest.raises(OffsetConflict) as gap:
        hubexports.append(reg, hub, cid, 2000, data[2000:])
    assert gap.value.offset == 1500
    with pytest.raises(NotFound):
        hubexports.append(reg, stranger, cid, 1500, data[1500:])
    done = hubexports.append(reg, hub, cid, 1500, data[1500:])
    assert (done.complete, done.sha256) == (True, hashlib.sha256(data).hexdigest())
    # A complete copy is never replaced, and a resend is answered with its state.
    assert hubexports.create(reg, hub, cid, _record(b"other")).sha256 == done.sha256
    assert hubexports.append(reg, hub, cid, 0, data[:10]).complete
    size, chunks = hubexports.open_export(reg, h, cid, actor="member:m_1")
    assert (size, b"".join(chunks)) == (len(data), data)
    with reg.engine.connect() as conn:
        audit = conn.execute(select(db.audit.c.actor, db.audit.c.action).where(db.audit.c.target == cid)).all()
    assert ("member:m_1", "hub_export.read") in audit and ("hub:hub_a", "hub_export.upload") in audit
    with pytest.raises(NotFound):
        hubexports.open_export(reg, "hh_other", cid, actor="member:m_2")


def test_a_bad_digest_is_discarded_and_a_resealed_copy_starts_over(reg: Registry) -> None:
    h = reg.create_household("Koti", actor="test")
    hub = HubIdentity("hub_a", h)
    cid = _command(reg, h, "hub_a")
    data = random.Random(8).randbytes(100)
    hubexports.create(reg, hub, cid, _record(data))
    with pytest.raises(RegisterError) as bad:
        hubexports.append(reg, hub, cid, 0, bytes(100))
    assert bad.value.code == "digest_mismatch"
    assert reg.blobs.size(h, hubexports.BLOB_PREFIX + cid) == 0
    hubexports.append(reg, hub, cid, 0, data[:40])
    # The hub lost its sealed file and sealed again (new age randomness): the upload starts over.
    again = random.Random(9).randbytes(120)
    assert hubexports.create(reg, hub, cid, _record(again)).offset == 0
    assert hubexports.append(reg, hub, cid, 0, again).complete
    assert hubexports.ready(reg, h)[cid]["size"] == 120


def test_a_copy_lives_seven_days_and_an_unfinished_upload_as_long(reg: Registry) -> None:
    h = reg.create_household("Koti", actor="test")
    hub = HubIdentity("hub_a", h)
    done_id, half_id = _command(reg, h, "hub_a"), _command(reg, h, "hub_a")
    hubexports.create(reg, hub, done_id, _record(b"x" * 10))
    hubexports.append(reg, hub, done_id, 0, b"x" * 10)
    hubexports.create(reg, hub, half_id, _record(b"y" * 10))
    hubexports.append(reg, hub, half_id, 0, b"y" * 5)
    now = time.time()
    assert hubexports.purge_expired(reg, now=now + hubexports.KEEP_S - 600) == 0
    later = now + hubexports.KEEP_S + 600
    with pytest.raises(NotFound):  # expired but not yet purged: not served either
        hubexports.open_export(reg, h, done_id, actor="member:m_1", now=later)
    assert hubexports.purge_expired(reg, now=later) == 2
    assert reg.blobs.size(h, hubexports.BLOB_PREFIX + done_id) == 0
    assert reg.blobs.size(h, hubexports.BLOB_PREFIX + half_id) == 0
    assert hubexports.ready(reg, h, now=now) == {}


def test_the_page_states() -> None:
    assert hubexports.export_state({"status": "pending"}, None) == "asked"
    assert hubexports.export_state({"status": "failed"}, None) == "failed"
    assert hubexports.export_state({"status": "done"}, {"size": 1}) == "ready"
    assert hubexports.export_state({"status": "done"}, None) == "expired"
