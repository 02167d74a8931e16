"""The register's side of the app's data, erase and settings pages, on a real Registry (SQLite file, real CA):
restriction, rectification, export requests, erasure with its verified receipt and progress tokens.
The same flows through the browser are in the ``test_app_*`` page tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from cloud_sync import receipts
from cloud_sync.register import db, mydata, rectify, restrictions
from cloud_sync.register.errors import Forbidden, Invalid, NotFound
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings

ACTOR = "member:m_test"


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(Settings(state_dir=tmp_path / "reg"))


def _household(reg: Registry, name: str, hubs: int = 1) -> tuple[str, list[str]]:
    h = reg.create_household(name, actor="test")
    ids = []
    with reg.engine.begin() as conn:
        for i in range(hubs):
            hub_id = f"hub_{name}_{i}"
            conn.execute(
                insert(db.hubs).values(
                    id=hub_id, household_id=h, name="", cert_sha256="0" * 64, enrolled_at=time.time(), revoked=False
                )
            )
            conn.execute(
                insert(db.devices).values(
                    household_id=h,
                    device_id=f"zigbee:{name}{i}",
                    hub_id=hub_id,
                    kind="sensor",
                    name="Anturi",
                    room="Keittiö",
                    updated_at=time.time(),
                )
            )
            conn.execute(
                insert(db.readings).values(
                    hub_id=hub_id,
                    seq=1,
                    household_id=h,
                    device_id=f"zigbee:{name}{i}",
                    quantity="temperature",
                    value=21.5,
                    ts=time.time(),
                    received_at=time.time(),
                )
            )
            ids.append(hub_id)
    return h, ids


def _commands(reg: Registry, h: str, kind: str) -> list[dict[str, object]]:
    c = db.commands.c
    with reg.engine.connect() as conn:
        rows = conn.execute(select(db.commands).where(c.household_id == h, c.kind == kind)).mappings()
        return [dict(r) for r in rows]


def test_restriction_is_recorded_audited_and_sent_to_every_hub(reg: Registry) -> None:
    h, hubs = _household(reg, "a", hubs=2)
    ids = restrictions.set_restricted(reg, h, "camera", True, actor=ACTOR)
    assert len(ids) == 2
    assert restrictions.restricted(reg, h) == {"camera"}
    sent = _commands(reg, h, "restrict")
    assert {c["hub_id"] for c in sent} == set(hubs)
    assert all(c["args"] == {"category": "camera", "on": True, "actor": ACTOR} for c in sent)
    audit = [e for e in reg.audit_entries(h) if e["action"] == "restriction.change"]
    assert audit[0]["actor"] == ACTOR and audit[0]["target"] == "camera"
    restrictions.set_restricted(reg, h, "camera", False, actor=ACTOR)
    assert restrictions.restricted(reg, h) == set()
    with pytest.raises(Invalid):
        restrictions.set_restricted(reg, h, "everything", True, actor=ACTOR)


def test_rectify_changes_the_name_and_tells_the_devices_hub_only(reg: Registry) -> None:
    h, hubs = _household(reg, "b", hubs=2)
    cid = rectify.rectify_device(reg, h, "zigbee:b1", name="Makuuhuoneen anturi", room="Makuuhuone", actor=ACTOR)
    (cmd,) = _commands(reg, h, "rename")
    assert cmd["id"] == cid and cmd["hub_id"] == hubs[1]
    assert cmd["args"] == {"device_id": "zigbee:b1", "name": "Makuuhuoneen anturi", "room": "Makuuhuone"}
    with reg.engine.connect() as conn:
        row = conn.execute(select(db.devices).where(db.devices.c.device_id == "zigbee:b1")).mappings().one()
    assert (row["name"], row["room"]) == ("Makuuhuoneen anturi", "Makuuhuone")
    (entry,) = [e for e in reg.audit_entries(h) if e["action"] == "device.rectify"]
    assert "Makuuhuone" not in entry["detail"], "the audit names the fields, never the personal data"
    assert rectify.rectify_device(reg, h, "zigbee:b1", name="Makuuhuoneen anturi", room="Makuuhuone", actor=ACTOR) == ""
    with pytest.raises(Invalid):
        rectify.rectify_device(reg, h, "zigbee:b1", name="x" * 65, room="", actor=ACTOR)
    with pytest.raises(Invalid):
        rectify.rectify_device(reg, h, "zigbee:b1", name="a\nb", room="", actor=ACTOR)


def test_a_household_cannot_reach_another_households_device(reg: Registry) -> None:
    a, _ = _household(reg, "c")
    _b, _ = _household(reg, "d")
    with pytest.raises(NotFound):
        rectify.rectify_device(reg, a, "zigbee:d0", name="mine now", room="", actor=ACTOR)
    with reg.engine.connect() as conn:
        name = conn.execute(select(db.devices.c.name).where(db.devices.c.device_id == "zigbee:d0")).scalar()
    assert name == "Anturi"


def test_export_request_reaches_each_hub_and_its_answer_is_shown(reg: Registry) -> None:
    h, hubs = _household(reg, "e")
    (cid,) = mydata.ask_hub_export(reg, h, actor=ACTOR)
    (shown,) = mydata.hub_exports(reg, h)
    assert shown["id"] == cid and shown["hub_id"] == hubs[0] and shown["status"] == "pending"


def test_erase_gives_a_verified_receipt_and_follows_the_hubs(reg: Registry) -> None:
    h, _ = _household(reg, "f", hubs=2)
    before = mydata.held(reg, h)
    assert before["readings"] == 2 and before["devices"] == 2
    done = mydata.erase(reg, h, actor=ACTOR)
    assert done.signer == "register"
    assert done.receipt["receipt"]["erased"]["readings"] == 2
    assert len(done.hub_commands) == 2
    assert mydata.held(reg, h)["readings"] == 0
    rid = done.receipt["receipt"]["receipt_id"]
    progress = mydata.erasure_progress(reg, h, rid)
    assert progress["register"]["signer"] == "register"
    assert [x["state"] for x in progress["hubs"]] == ["pending", "pending"]
    assert not progress["done"]
    # The bytes handed out for checking with openssl are exactly what was signed.
    parts = mydata.openssl_parts(done.receipt)
    assert parts["body"] == receipts.canonical(done.receipt["receipt"])
    tampered = {**done.receipt, "receipt": {**done.receipt["receipt"], "erased": {"readings": 0}}}
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify(tampered, reg.ca.cert_pem)


def test_progress_tokens_name_one_erasure_of_one_household(reg: Registry) -> None:
    tokens = mydata.ProgressTokens(reg)
    token = tokens.make("hh_1", "rcpt_1")
    assert tokens.read(token) == ("hh_1", "rcpt_1")
    for bad in (token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], "x", ""):
        with pytest.raises(Forbidden):
            tokens.read(bad)
    other = mydata.ProgressTokens(Registry(Settings(state_dir=reg.settings.state_dir.parent / "other")))
    with pytest.raises(Forbidden):
        other.read(token)
    with pytest.raises(NotFound):
        mydata.erasure_progress(reg, reg.create_household("g", actor="t"), "rcpt_1")
