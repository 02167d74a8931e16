"""The auditor's test: after an erasure, and after retention with the clock moved on, no byte of the household's
data is left anywhere on the hub or in the register, and nothing erased or expired can be decrypted.

Markers are planted in every category — a reading value (as text and as IEEE 754 doubles in both byte orders), a
device's name and room and a member's name and e-mail (UTF-8 and UTF-16), device and clip ids — on a hub that syncs
them to a real register over mTLS, on SQLite and on PostgreSQL. Then every byte of the hub's state directory, the
register's state directory (its SQLite files and blob store) and, on PostgreSQL, the whole cluster's data directory
(tables, indexes, WAL) is scanned for them. A scan before the erasure must find them, so the scan is proven able to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyrage
import pytest
import sqlalchemy as sa

from cloud_sync import receipts
from cloud_sync.register import db
from cloud_sync.register import retention as register_retention
from cloud_sync.uplink import HubIdentity, Uplink
from gateway import crypto
from gateway.errors import DecryptError
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
from gateway.privacy import Eraser, ExportProgress, export_archive
from gateway.store import Store, schema
from tests.integration.test_uplink import running, until, uplink_config
from tests.support.postgres import PostgresCluster
from tests.support.register import RunningRegister, start_register

REPO = Path(__file__).resolve().parents[2]
FAKETIME = next(iter(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")), None)

VALUE = 31_415.926_535_897_93
DEVICE_ID = "zigbee2mqtt:0x00158d00MARK1D"
DEVICE_NAME = "Makuuhuoneen Ölämpömittari-Q7"
ROOM = "Pörriäisten huone-Z9"
ATTR = "Räkkiattribuutti-K4"
MEMBER = "Åsa Merkkinen-V2"
EMAIL = "asa.merkkinen.v2@example.fi"
HOUSEHOLD_NAME = "Merkkisten koti-H3"
HUB_NAME = "Eteisen hubi-N8"


def _texts(category: str, text: str) -> dict[str, bytes]:
    return {
        f"{category}: utf-8": text.encode(),
        f"{category}: utf-16-le": text.encode("utf-16-le"),
        f"{category}: utf-16-be": text.encode("utf-16-be"),
        # As JSON with non-ASCII escaped (how SQLAlchemy's JSON columns store it).
        f"{category}: json": json.dumps(text)[1:-1].encode(),
    }


@dataclass
class Markers:
    clip_ids: list[str] = field(default_factory=list)

    def patterns(self, *, membership: bool = True) -> dict[str, bytes]:
        """``category: representation`` -> bytes to look for. ``membership=False`` leaves out what outlives
        retention by design (the device registry — ids, names, rooms — and the members), which lasts as long as the
        device or the membership does."""
        out = {
            "value: text": repr(VALUE).encode(),
            "value: IEEE 754 little-endian": struct.pack("<d", VALUE),
            "value: IEEE 754 big-endian": struct.pack(">d", VALUE),
            **_texts("event attribute", ATTR),
            **{f"clip id: {c}": c.encode() for c in self.clip_ids},
        }
        if membership:
            out |= _texts("device id", DEVICE_ID) | _texts("device name", DEVICE_NAME) | _texts("room", ROOM)
            out |= _texts("member name", MEMBER) | _texts("e-mail", EMAIL)
        return out


# PostgreSQL's WAL layout (src/include/access/xlog_internal.h): 8 KiB pages, each opening with a page header —
# the long one (40 bytes) on a segment's first page, the short one (24) on the others. A record that crosses a
# page goes on after the next page's header, so a marker can be split by one.
WAL_PAGE = 8192
WAL_SEGMENT = 16 * 1024 * 1024
WAL_LONG_HEADER = 40
WAL_SHORT_HEADER = 24


def _is_wal_segment(path: Path) -> bool:
    return path.parent.name == "pg_wal" and len(path.name) == 24 and all(c in "0123456789ABCDEF" for c in path.name)


def wal_records(segment: bytes) -> bytes:
    """A WAL segment with its page headers cut out: the records' bytes as they were written, contiguous."""
    return b"".join(
        segment[page + (WAL_LONG_HEADER if page % WAL_SEGMENT == 0 else WAL_SHORT_HEADER) : page + WAL_PAGE]
        for page in range(0, len(segment), WAL_PAGE)
    )


def scan(roots: list[Path], patterns: dict[str, bytes]) -> dict[str, list[str]]:
    """Every file under ``roots``, byte by byte (names included): pattern -> files that hold it. A WAL segment is
    read without its page headers, so that a marker a header split is found too (about one in 400 would not be)."""
    hits: dict[str, list[str]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            for what, needle in patterns.items():
                if needle in path.name.encode():
                    hits.setdefault(what, []).append(f"name of {path}")
            if not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):  # PostgreSQL may unlink a file while we read
                data = path.read_bytes()
                if _is_wal_segment(path):
                    data = wal_records(data)
                for what, needle in patterns.items():
                    if needle in data:
                        hits.setdefault(what, []).append(str(path))
    return hits


@dataclass
class Home:
    """A hub (store, eraser, uplink) syncing to a register, with markers planted everywhere."""

    register: RunningRegister
    state: Path
    hub_id: str
    household: str
    store: Store
    eraser: Eraser
    markers: Markers
    devices: list[dict[str, str]]
    pg: PostgresCluster | None

    def roots(self) -> list[Path]:
        roots = [self.state, self.state.parent / "run", self.register.settings.state_dir]
        if self.pg is not None:
            roots.append(self.pg.directory / "data")
        return roots


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-rows"])
def engine(request: pytest.FixtureRequest) -> PostgresCluster | None:
    return request.getfixturevalue("postgres") if request.param.startswith("postgresql") else None


@pytest.fixture
def register(
    engine: PostgresCluster | None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RunningRegister]:
    url = name = None
    if engine is not None:
        name = engine.create_database()
        url = engine.url(name)
    # "postgresql": the hub's readings of one batch arrive as a packed chunk (cloud_sync/register/chunks.py);
    # "postgresql-rows": chunk writing off, every reading a row of `readings`, as a register before this release.
    r = start_register(
        tmp_path / "register", url, readings_chunks=request.node.callspec.params["engine"] != "postgresql-rows"
    )
    try:
        yield r
    finally:
        r.close()
        if engine is not None and name is not None:
            # The cluster is the session's: a test that failed before its erasure must not leave its markers,
            # in its database or in the WAL, to be found by the next test's scan.
            engine.drop_database(name)
            engine.retire_wal()


@contextlib.asynccontextmanager
async def home(register: RunningRegister, pg: PostgresCluster | None, tmp_path: Path) -> AsyncIterator[Home]:
    household = register.create_household("Koti")
    register.reg.add_member(household, MEMBER, _member_recipient(), email=EMAIL, actor="test")
    state = tmp_path / "hub"
    enrolled = register.enroll(household, state_dir=state)
    key = crypto.load_master_key(state)
    spool = state / "spool"
    spool.mkdir(mode=0o700)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.01) as store:
        exports = tmp_path / "run" / "exports"
        exports.mkdir(parents=True)
        eraser = Eraser(store, key, spool_dir=spool, hub_name="koti", state_dir=state, exports_dir=exports, carry=True)
        devices = [{"device_id": DEVICE_ID, "kind": "sensor", "name": DEVICE_NAME, "model": "", "room": ROOM}]

        async def erase(command: Any) -> dict[str, Any]:
            theirs = command.args.get("register_receipt")
            return await eraser.request("all", requested_by="register", origin="register", register_receipt=theirs)

        eraser.on_erased.append(lambda job: devices.clear())
        uplink = Uplink(
            store,
            uplink_config(register.url),
            HubIdentity(state),
            command_handlers={"erase": erase},
            spool_dir=spool,
            erasures=eraser.outbox,
            devices_source=lambda: list(devices),
        )
        h = Home(register, state, enrolled.hub_id, household, store, eraser, Markers(), devices, pg)
        async with running(uplink):
            await _plant(h, spool)
            await until(lambda: _synced(h), timeout=30, what="every marker to reach the register")
            if register.settings.readings_chunks and register.reg.engine.dialect.name == "postgresql":
                with register.reg.engine.connect() as conn:
                    packed = conn.execute(sa.text("SELECT coalesce(sum(n), 0) FROM reading_chunks")).scalar_one()
                assert packed > 0, "the readings were meant to arrive as a chunk"
            # The household's export ("Näytä tietoni") waits in the runtime directory, in plaintext.
            await store.flush()
            out = exports / "kotihub-export-1.zip"
            await asyncio.to_thread(
                export_archive, store, out, hub_name="koti", spool_dir=spool, progress=ExportProgress()
            )
            assert out.exists()
            yield h


def _member_recipient() -> str:
    return str(pyrage.x25519.Identity.generate().to_public())


async def _plant(h: Home, spool: Path) -> None:
    now = time.time()
    store = h.store
    await store.upsert_device(
        DeviceInfo(device_id=DEVICE_ID, driver="mqtt", kind=DeviceKind.SENSOR, name=DEVICE_NAME, room=ROOM)
    )
    await store.add_readings([Reading(DEVICE_ID, Quantity.TEMPERATURE, VALUE, now - i) for i in range(20)])
    await store.add_event(
        Event(device_id=DEVICE_ID, kind=EventKind.SMOKE, state="smoke", ts=now, attrs={"label": ATTR})
    )
    await store.audit("cli", "rename", DEVICE_ID, {"old": DEVICE_NAME, "new": ROOM})
    # A clip: its plaintext is the markers too (it must never be readable), its id is a marker of its own.
    clip_id = f"{os.urandom(16).hex()}"
    plain = (repr(VALUE) + DEVICE_NAME).encode() * 50
    ciphertext = pyrage.encrypt(plain, [pyrage.x25519.Recipient.from_str(_member_recipient())])
    (spool / f"{clip_id}.age").write_bytes(ciphertext)
    record = {
        "clip_id": clip_id,
        "device_id": DEVICE_ID,
        "started": now - 30,
        "duration_s": 10.0,
        "size": len(ciphertext),
        "sha256": hashlib.sha256(ciphertext).hexdigest(),
        "reason": "smoke",
    }
    await store.add_item(Lane.CLIPS, now - 30, record, ref=clip_id)
    h.markers.clip_ids.append(clip_id)


def _synced(h: Home) -> bool:
    reg = h.register
    clip = reg.reg.blobs.size(h.household, h.markers.clip_ids[0])
    with reg.reg.engine.connect() as conn:
        devices = conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one()
    return (
        len(reg.items(h.hub_id, "readings")) == 20
        and len(reg.items(h.hub_id, "alarm")) == 1
        and len(reg.items(h.hub_id, "clips")) == 1
        and clip > 0
        and devices == 1
    )


def _ciphertexts(store: Store) -> list[tuple[bytes, bytes]]:
    """Every sealed record on the hub with its context: what a copy on worn flash would hold."""

    def read(conn: sa.Connection) -> list[tuple[bytes, bytes]]:
        out = [
            (bytes(r.blob), b"frames|%d|%d" % (r.first_seq, r.n))
            for r in conn.execute(sa.select(schema.reading_frames))
        ]
        out += [(bytes(r.blob), b"audit|%d" % r.id) for r in conn.execute(sa.select(schema.audit))]
        return out

    return list(store.read(read))


async def _undecryptable(state: Path, sealed: list[tuple[bytes, bytes]]) -> None:
    """Reopens the hub with everything left on its disk (the master key included): no old record opens."""
    key = crypto.load_master_key(state, create=False)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305) as fresh:
        for blob, context in sealed:
            with pytest.raises(DecryptError):  # the key is gone (or a new one for the day cannot open it)
                fresh.keyring.open(blob, context)


def _no_hits(h: Home, patterns: dict[str, bytes]) -> None:
    hits = scan(h.roots(), patterns)
    assert hits == {}, "markers left behind:\n" + "\n".join(f"{k}: {v}" for k, v in hits.items())


@pytest.mark.parametrize("asked", ["hub", "register"])
async def test_an_erasure_leaves_no_trace_on_the_hub_or_in_the_register(
    asked: str, register: RunningRegister, engine: PostgresCluster | None, tmp_path: Path
) -> None:
    async with home(register, engine, tmp_path) as h:
        before = scan(h.roots(), h.markers.patterns())
        # The scan sees what is there: every category is found (in some representation) before the erasure.
        for category in {what.split(":")[0] for what in h.markers.patterns()}:
            assert any(k.startswith(category + ":") for k in before), f"the scan could not find any {category}"
        sealed = _ciphertexts(h.store)
        assert sealed
        if asked == "hub":
            await h.eraser.request("all", requested_by="cli")
            await _wait_outbox_empty(h)
            signed = (await h.store.get_setting("erasure_receipts"))[-1]
            verified = receipts.verify(signed, h.register.reg.ca.cert_pem)
        else:
            await asyncio.to_thread(register_retention.erase_household, h.register.reg, h.household, actor="app")
            await until(
                lambda: any(c["status"] == "done" for c in h.register.reg.commands(h.household)),
                what="the hub to erase its copy and report",
            )
            done = next(c for c in h.register.reg.commands(h.household) if c["status"] == "done")
            verified = receipts.verify(done["detail"], h.register.reg.ca.cert_pem)
        # Both sides signed, each with a key bound to its identity.
        assert verified.signer == f"hub:{h.household}:{h.hub_id}"
        assert verified.embedded == ("register",)
        await h.store.flush()
    _no_hits(h, h.markers.patterns())
    await _undecryptable(h.state, sealed)


async def _wait_outbox_empty(h: Home) -> None:
    deadline = time.monotonic() + 30
    while await h.eraser.outbox.pending():
        assert time.monotonic() < deadline, "the erasure never reached the register"
        await asyncio.sleep(0.05)


_RETENTION_CHILD = """
import asyncio, sys
from pathlib import Path
from cloud_sync.register.registry import Registry
from cloud_sync.register.retention import purge_expired
from cloud_sync.register.settings import Settings
from gateway import crypto
from gateway.retention import Retention
from gateway.store import Store

state, register_dir, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] or None

async def hub() -> None:
    key = crypto.load_master_key(state, create=False)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305) as store:
        exports = state.parent / "run" / "exports"
        retention = Retention(store, days=183, spool_dir=state / "spool", exports_dir=exports)
        report = await retention.run_once(force_time=True)
        assert report.epochs_shredded >= 1 and report.exports_deleted == 1, report

asyncio.run(hub())
registry = Registry(Settings(state_dir=register_dir, db_url=url))
summary = purge_expired(registry)
assert summary["readings"] == 20, summary
registry.close()
print("ok")
"""


async def test_retention_with_the_clock_moved_on_leaves_no_trace(
    register: RunningRegister, engine: PostgresCluster | None, tmp_path: Path
) -> None:
    assert FAKETIME is not None, "libfaketime is missing: run scripts/lib.sh's ensure_system_packages"
    async with home(register, engine, tmp_path) as h:
        sealed = _ciphertexts(h.store)
        await h.store.flush()
    # Everything just planted is 200 days old to a retention run whose clock libfaketime has moved on.
    env = {
        **os.environ,
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME": "+200d",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(REPO),
    }
    url = register.settings.db_url or ""
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _RETENTION_CHILD, str(h.state), str(register.settings.state_dir), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert child.returncode == 0 and "ok" in child.stdout, child.stderr
    _no_hits(h, h.markers.patterns(membership=False))
    await _undecryptable(h.state, sealed)
    # The household's membership and its devices' names outlive retention (they are not tied to a day), and
    # the register still holds them — so the scan above would have seen them had they been in the day data.
    assert scan([register.settings.state_dir] + ([engine.directory / "data"] if engine else []), _texts("m", MEMBER))


def test_closing_a_household_leaves_no_trace_of_its_names(
    register: RunningRegister, engine: PostgresCluster | None, tmp_path: Path
) -> None:
    """The household's and its hubs' names are blanked when it leaves the service; no earlier version of either row
    survives in the database's files (PostgreSQL's dead row versions and WAL, SQLite's freed cells and WAL)."""
    household = register.create_household(HOUSEHOLD_NAME)
    hub = register.enroll(household, state_dir=tmp_path / "hub")
    with register.reg.engine.begin() as conn:  # the name a hub gives itself at enrollment, renamed by its owner
        conn.execute(sa.update(db.hubs).where(db.hubs.c.id == hub.hub_id).values(name=HUB_NAME))
    roots = [register.settings.state_dir, *([engine.directory / "data"] if engine else [])]
    patterns = {**_texts("household", HOUSEHOLD_NAME), **_texts("hub", HUB_NAME)}
    before = scan(roots, patterns)
    assert {k.split(":")[0] for k in before} == {"household", "hub"}, before
    register_retention.erase_household(register.reg, household, actor="test", close=True)
    hits = scan(roots, patterns)
    assert hits == {}, "names left behind:\n" + "\n".join(f"{k}: {v}" for k, v in hits.items())


def test_the_scan_finds_markers_a_wal_page_header_split(postgres: PostgresCluster) -> None:
    """3,000 distinct markers, one per row, all logged in the WAL: the scan finds every one, though some (about
    one in 400, by where the records fall) are split by a page header in the raw file."""
    name = postgres.create_database()
    markers = [f"MARK{i:05d}-{hashlib.md5(str(i).encode()).hexdigest()}".encode() for i in range(3000)]
    try:
        with psycopg.connect(postgres.admin_dsn(name), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (i int, s text)")
            conn.execute(
                "INSERT INTO t SELECT i, 'MARK' || lpad(i::text, 5, '0') || '-' || md5(i::text)"
                " FROM generate_series(0, 2999) i"
            )
        segments = sorted(p for p in (postgres.directory / "data" / "pg_wal").iterdir() if _is_wal_segment(p))
        raw = b"".join(p.read_bytes() for p in segments)
        assert sum(m not in raw for m in markers) > 0, "no marker fell across a page: the check proves nothing"
        hits = scan([postgres.directory / "data" / "pg_wal"], {m.decode(): m for m in markers})
        assert sorted(hits) == sorted(m.decode() for m in markers)
    finally:
        postgres.drop_database(name)
        postgres.retire_wal()
