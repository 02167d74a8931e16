"""Asking the hub for its copy, end to end: the real daemon answers the register's ``export`` command over TLS with
its archive sealed to the household's members; the register holds ciphertext only, which a member's identity opens
to the same archive ``kotihub export`` writes, and nobody else's does."""

from __future__ import annotations

import asyncio
import io
import random
import time
import zipfile
from pathlib import Path

import pyrage
import pytest
import requests
from sqlalchemy import delete, select

from cloud_sync.register import db, hubexports, mydata
from cloud_sync.register.errors import NotFound
from cloud_sync.uplink import HubIdentity, RegisterClient
from gateway import hub_export
from kotihub_tools.broker import MosquittoBroker
from kotihub_tools.simulators.mqtt import publish_scene
from tests.integration import test_hub_register
from tests.integration.test_daemon import wait_until
from tests.integration.test_hub_register import SyncedHub
from tests.support.register import ACTOR, RunningRegister
from tests.support.stores import open_store
from tests.support.tcpproxy import fault_proxy
from tests.unit.test_privacy import populate

# The provisioned, paired, running hub of test_hub_register (its fault proxy in between).
proxy, synced_hub = test_hub_register.proxy, test_hub_register.synced_hub


def _bearer(register: RunningRegister, token: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(register.ca_file)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def _export_command(register: RunningRegister, household: str) -> dict[str, object] | None:
    done = [c for c in register.reg.commands(household) if c["kind"] == "export" and c["status"] != "pending"]
    return done[0] if done else None


def test_the_hub_answers_export_with_a_copy_only_a_member_opens(
    synced_hub: tuple[SyncedHub, str], register: RunningRegister, mosquitto: MosquittoBroker
) -> None:
    hub, household = synced_hub
    hub_id = HubIdentity(hub.state).hub_id()
    asyncio.run(publish_scene(mosquitto.host, mosquitto.port))
    wait_until(lambda: register.items(hub_id, "readings"), what="readings in the register")
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 1, what="the hub's verified member list")
    (command_id,) = mydata.ask_hub_export(register.reg, household, actor=ACTOR)
    wait_until(lambda: _export_command(register, household), timeout=60, what="the hub's answer")
    command = _export_command(register, household)
    assert command is not None and command["status"] == "done", command["detail"] if command else None
    detail = command["detail"]
    assert isinstance(detail, dict) and detail["export_id"] == command_id

    ready = hubexports.ready(register.reg, household)
    assert set(ready) == {command_id}
    size, chunks = hubexports.open_export(register.reg, household, command_id, actor=ACTOR)
    ciphertext = b"".join(chunks)
    assert len(ciphertext) == size == detail["size"]
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    # The read is on the audit trail.
    with register.reg.engine.connect() as conn:
        actions = conn.execute(select(db.audit.c.action).where(db.audit.c.target == command_id)).scalars().all()
    assert "hub_export.read" in actions and "hub_export.upload" in actions

    # The household API lists it and serves the same bytes, to this household's token only.
    api = _bearer(register, register.api_token("household", household))
    listed = api.get(f"{register.url}/v1/households/{household}/hub-exports", timeout=30).json()
    assert [(e["id"], e["state"], e["size"]) for e in listed] == [(command_id, "ready", size)]
    assert api.get(f"{register.url}/v1/households/{household}/hub-exports/{command_id}", timeout=30).content == (
        ciphertext
    )
    stranger = _bearer(register, register.api_token("household", register.create_household("Naapuri")))
    refused = stranger.get(f"{register.url}/v1/households/{household}/hub-exports/{command_id}", timeout=30)
    assert refused.status_code == 403

    # Nobody but a member opens it: not a stranger's identity (the register holds none of the household's).
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(ciphertext, [pyrage.x25519.Identity.generate()])
    member = register.members[household][0]
    sealed = zipfile.ZipFile(io.BytesIO(pyrage.decrypt(ciphertext, [member.identity])))

    # It is the hub's export: the same members and the same readings and events as `kotihub export` writes.
    out = hub.root / "mine.zip"
    assert hub.cli("export", "--out", str(out)).returncode == 0
    with zipfile.ZipFile(out) as local:
        assert sorted(sealed.namelist()) == sorted(local.namelist())
        for name in ("readings.jsonl", "events.jsonl"):
            assert sealed.read(name) == local.read(name), name
    readings = sealed.read("readings.jsonl")
    assert readings.count(b"\n") >= 1
    device = readings.split(b'"device_id": "')[1].split(b'"')[0]
    assert device and device not in ciphertext  # what the register holds says nothing in the clear

    # No sealed or plaintext copy stays behind on the hub once the register holds it (the CLI's own file aside).
    left = [p.name for p in (hub.root / "run" / "exports").glob("kotihub-export-*")]
    assert left == [], left

    # A week later it is gone, blob and row; the command's record says it was done.
    blobs = register.reg.blobs
    assert blobs.size(household, hubexports.BLOB_PREFIX + command_id) == size
    assert hubexports.purge_expired(register.reg, now=command["completed_at"] + hubexports.KEEP_S - 60) == 0  # type: ignore[operator]
    assert hubexports.purge_expired(register.reg, now=command["completed_at"] + hubexports.KEEP_S + 60) == 1  # type: ignore[operator]
    assert blobs.size(household, hubexports.BLOB_PREFIX + command_id) == 0
    assert hubexports.ready(register.reg, household) == {}


def test_an_erasure_deletes_the_hubs_copy_at_the_register(
    synced_hub: tuple[SyncedHub, str], register: RunningRegister
) -> None:
    """Both halves of the household's erasure reach the copy: its row is in ``HOUSEHOLD_TABLES`` (deleted with the
    household's rows) and its blob in the household's blob directory (deleted with its clips)."""
    hub, household = synced_hub
    wait_until(lambda: hub.cli_json("status")["members"]["recipients"] == 1, what="the hub's verified member list")
    (command_id,) = mydata.ask_hub_export(register.reg, household, actor=ACTOR)
    wait_until(lambda: hubexports.ready(register.reg, household), timeout=60, what="the sealed copy")
    assert hubexports.hub_exports in db.HOUSEHOLD_TABLES
    reg = register.reg
    with reg.engine.begin() as conn:
        for table in db.HOUSEHOLD_TABLES:
            if table is hubexports.hub_exports:
                conn.execute(delete(table).where(table.c.household_id == household))
    assert reg.blobs.delete_household(household) == 1
    assert hubexports.ready(reg, household) == {}
    assert reg.blobs.size(household, hubexports.BLOB_PREFIX + command_id) == 0
    with pytest.raises(NotFound):
        hubexports.open_export(reg, household, command_id, actor=ACTOR)


def test_a_lost_reply_mid_upload_resumes_and_the_copy_arrives_once(
    register_any: RunningRegister, tmp_path: Path
) -> None:
    """The hub's upload over TLS through a proxy that cuts the register's reply to a chunk it received: the hub
    resumes where the register is, the bytes arrive once, and the register verifies the digest (SQLite and
    PostgreSQL), and a week later it is gone."""
    register = register_any
    ident = register.enroll()
    (command_id,) = register.reg.queue_command(ident.household_id, "export", {}, hub_id=ident.hub_id, actor=ACTOR)
    sealed = tmp_path / "sealed.age"
    sealed.write_bytes(random.Random(18).randbytes(3 * hub_export.CHUNK + 12345))
    with fault_proxy(register.port) as proxy:
        proxy.request_bytes, proxy.cut_replies = 2 * hub_export.CHUNK, 1  # the second chunk's reply is lost

        def client() -> RegisterClient:
            return RegisterClient(proxy.url, HubIdentity(ident.state_dir), connect_timeout=5, read_timeout=30)

        sent = asyncio.run(hub_export.send(client, command_id, sealed))
        assert proxy.cut_count == 1
    assert sent["size"] == sealed.stat().st_size
    _, chunks = hubexports.open_export(register.reg, ident.household_id, command_id, actor=ACTOR)
    assert b"".join(chunks) == sealed.read_bytes()
    with register.reg.engine.connect() as conn:
        uploads = conn.execute(
            select(db.audit.c.id).where(db.audit.c.target == command_id, db.audit.c.action == "hub_export.upload")
        ).all()
    assert len(uploads) == 1
    assert hubexports.purge_expired(register.reg, now=time.time() + hubexports.KEEP_S + 60) == 1
    assert register.reg.blobs.size(ident.household_id, hubexports.BLOB_PREFIX + command_id) == 0


async def test_a_hub_restarted_mid_upload_resends_the_copy_it_sealed(register: RunningRegister, tmp_path: Path) -> None:
    """Killed after sealing and part of the upload, the hub gets the command again (still pending): it sends the
    sealed file it kept, from where the register is, and never seals a second, different copy."""
    ident = register.enroll()
    (command_id,) = register.reg.queue_command(ident.household_id, "export", {}, hub_id=ident.hub_id, actor=ACTOR)
    member = pyrage.x25519.Identity.generate()
    exports = tmp_path / "run" / "exports"
    exports.mkdir(parents=True)
    async with open_store(tmp_path / "hub") as store:
        await populate(store, tmp_path / "spool")
        await store.flush()
        out = hub_export.ciphertext_path(exports, command_id)
        sealed = hub_export.seal_export(
            store, out, recipients=[str(member.to_public())], hub_name="koti", spool_dir=tmp_path / "spool"
        )
        kept = out.read_bytes()
        # What the hub sent before it was killed: the record and the first half.
        client = RegisterClient(register.url, HubIdentity(ident.state_dir), connect_timeout=5, read_timeout=30)
        try:
            url = f"/v1/exports/{command_id}"
            client.request("PUT", url, json={"size": sealed["size"], "sha256": sealed["sha256"]})
            client.request("PATCH", url, params={"offset": 0}, data=kept[: len(kept) // 2])
        finally:
            client.close()

        def nobody() -> list[str]:
            raise AssertionError("the hub sealed its copy again")

        answer = await hub_export.run(
            store,
            export_id=command_id,
            exports_dir=exports,
            recipients=nobody,
            hub_name="koti",
            spool_dir=tmp_path / "spool",
            client=lambda: RegisterClient(
                register.url, HubIdentity(ident.state_dir), connect_timeout=5, read_timeout=30
            ),
        )
        assert answer["sha256"] == sealed["sha256"]
        assert list(exports.iterdir()) == []  # delivered: nothing kept on the hub
        # Killed again between the upload and the result: the command comes back, the hub seals anew (other age
        # randomness), and the register's complete copy stands as the answer.
        again = await hub_export.run(
            store,
            export_id=command_id,
            exports_dir=exports,
            recipients=lambda: [str(member.to_public())],
            hub_name="koti",
            spool_dir=tmp_path / "spool",
            client=lambda: RegisterClient(
                register.url, HubIdentity(ident.state_dir), connect_timeout=5, read_timeout=30
            ),
        )
        assert (again["sha256"], again["size"]) == (sealed["sha256"], sealed["size"])
        assert list(exports.iterdir()) == []
    _, chunks = hubexports.open_export(register.reg, ident.household_id, command_id, actor=ACTOR)
    assert b"".join(chunks) == kept
    assert pyrage.decrypt(kept, [member])[:2] == b"PK"
