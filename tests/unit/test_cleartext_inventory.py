"""Everything kept in the clear, with the reason it must be (docs/register.md, "What is in the clear").

A column or a file that is not listed here fails this test: whoever adds one decides, in review, whether it may be
plain or must be sealed, keyed, coarsened or erased.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import sqlalchemy as sa

from cloud_sync.register import db, migrate
from drivers.camera.driver import new_clip_id
from gateway import crypto
from gateway.model import DeviceInfo, DeviceKind, Event, EventKind, Lane, Quantity, Reading
from gateway.store import Store, schema
from gateway.store.schema import COARSE_S, SEEN_S

SEALED = "AEAD record under a day key (or the device registry's key), opened only with the master key"

HUB_COLUMNS: dict[str, str] = {
    "epoch_keys.epoch": "the UTC day a key belongs to: how a record finds its key and how retention finds expired keys",
    "epoch_keys.wrapped": "the day key wrapped (AEAD) under the master key; deleting the row shreds the day",
    "lanes.lane": "a lane's name (alarm, events, readings, clips, diagnostics)",
    "lanes.next_seq": "the next sequence number: exactly-once delivery",
    "lanes.synced_seq": "what the register acknowledged: exactly-once delivery",
    "lanes.last_sync": "when the lane last synced (hub health, no household activity)",
    "reading_frames.first_seq": "sequence of the first reading in the frame: ordering and delivery",
    "reading_frames.n": "how many readings the frame holds",
    "reading_frames.epoch": "the day key sealing the frame: retention by day",
    "reading_frames.ts_min": f"the frame's first time, to {COARSE_S:.0f} s: finding frames by time",
    "reading_frames.ts_max": f"the frame's last time, to {COARSE_S:.0f} s",
    "reading_frames.blob": SEALED,
    "items.lane": "the item's lane",
    "items.seq": "the item's sequence: ordering and delivery",
    "items.epoch": "the day key sealing the item: retention by day",
    "items.ts": f"the item's time to {COARSE_S:.0f} s (the exact time is sealed)",
    "items.ref": "a clip's id: 128 random bits naming its spool file (no time, no camera)",
    "items.blob": SEALED,
    "devices.tag": "HMAC-SHA256 of the device id under a key derived from the master key (ids are often MACs)",
    "devices.first_seen": "the day the device was first seen",
    "devices.last_seen": "last heard, to ten minutes: offline detection across a restart",
    "devices.blob": SEALED,
    "audit.id": "the entry's number (part of its AEAD context)",
    "audit.epoch": "the day key sealing the entry: retention shreds it with that day",
    "audit.ts": f"the entry's time to {COARSE_S:.0f} s",
    "audit.blob": SEALED,
    "dead_letters.lane": "lane of an item the register refused for good",
    "dead_letters.seq": "its sequence",
    "dead_letters.ts": "when it was refused",
    "dead_letters.reason": "the register's error text (field paths and limits, never field values)",
    "driver_state.ns": "which driver's memory (e.g. the Zigbee2MQTT name map, BLE replay counters)",
    "driver_state.key_tag": "HMAC of the record's key under a key derived from the master key",
    "driver_state.device_tag": "the device's tag as in devices.tag, so erasing the device finds its records",
    "driver_state.blob": SEALED,
    "settings.key": "a setting's name",
    "settings.value": "restrictions, the running erasure job, signed erasure receipts and the erasure outbox:"
    " scopes, categories and counts — and for a device erasure, the device's id (the receipt must say what it"
    " covers); erasure receipts are kept 50 deep",
}

HUB_FILES: dict[str, str] = {
    r"kotihub\.db(-wal|-shm)?": "the encrypted store (WAL truncated by every erasure and retention run)",
    r"master\.key": "the master key (0600) when no systemd credential provides it",
    r"hub\.key": "the hub's mTLS key (0600): also signs erasure receipts",
    r"hub\.crt|register-ca\.crt": "certificates: public",
    r"spool": "the clip spool (0700)",
    r"member-list\.json": "the verified signed member list (0600): member ids and public keys, no names",
    r"spool/[0-9a-f]{32}(-jpeg)?\.age": "a clip: age ciphertext only members can open, named by its random id",
}

REGISTER_CLEAR: dict[str, str] = {
    "households": "the household (id, name, when created, erasure watermark); the name is blanked on closing",
    "hubs": "enrolled hubs: random ids, a name, the certificate's fingerprint, coarse last-seen",
    "api_tokens": "SHA-256 of API tokens, roles",
    "audit": "who did what when, on which household; counts and flags, never content; targets blanked when the"
    " household erases; expires after the retention period",
    "erasure_receipts": "the register's signed receipts (counts, scope); expire after the retention period",
    "member_log": "the signed member list's versions: member ids and public keys, no names; kept while the household"
    " is a customer (its hubs need the chain), gone when it closes",
    "hub_member_versions": "the member-list version each hub holds (a number)",
    "pending_certs": "a renewed hub certificate's SHA-256 until the hub first uses it (then the old one is retired)",
    "app_ceremonies": "the app's passkey challenges (random bytes, a member id while enrolling), for minutes: deleted"
    " when answered or expired",
    "release_rollouts": "a release's rollout (version, percent, failure threshold, state): fleet data, no household",
    "release_overrides": "a technician's pin or hold per hub (a random hub id, who set it): fleet data",
    "release_outcomes": "each hub's update outcome per version (a random hub id, a short reason): fleet data",
    "config_pushes": "configurations the operator pushed to a hub: the operator's own settings, checked by the config"
    " schema, a push naming a password refused before it is stored; kept as the operator's audit trail",
}


def test_every_hub_column_is_sealed_or_has_a_reason_to_be_plain() -> None:
    columns = {f"{t.name}.{c.name}" for t in schema.metadata.sorted_tables for c in t.columns}
    assert columns == set(HUB_COLUMNS), "classify new or removed columns in HUB_COLUMNS"


def test_every_register_table_is_erasable_household_data_or_has_a_reason() -> None:
    tables = {t.name for t in migrate.full_metadata().sorted_tables}
    household = {t.name for t in db.HOUSEHOLD_TABLES}
    assert household.isdisjoint(REGISTER_CLEAR)
    assert tables == household | set(REGISTER_CLEAR), "a new table joins db.HOUSEHOLD_TABLES or REGISTER_CLEAR"
    # What erasure and retention clear is found by household, so every such table must carry it.
    for table in db.HOUSEHOLD_TABLES:
        assert "household_id" in table.c, table.name


async def test_every_file_the_hub_keeps_is_listed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = crypto.load_master_key(state)
    async with Store.open(state, key, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.01) as store:
        clip_id = new_clip_id()
        (state / "spool").mkdir(mode=0o700)
        (state / "spool" / f"{clip_id}.age").write_bytes(b"age-encryption.org/v1\n")
        await store.add_item(Lane.CLIPS, time.time(), {"clip_id": clip_id}, ref=clip_id)
        names = {str(p.relative_to(state)) for p in state.rglob("*")}
    patterns = [re.compile(p) for p in HUB_FILES]
    unlisted = [n for n in names if not any(p.fullmatch(n) for p in patterns)]
    assert unlisted == [], "classify new files in HUB_FILES"
    secret = [n for n in ("kotihub.db", "master.key") if (state / n).stat().st_mode & 0o077]
    assert secret == []


def test_a_clip_id_says_nothing_about_its_clip() -> None:
    ids = {new_clip_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert not any(time.strftime("%Y%m%d") in i for i in ids)


async def test_plain_times_are_coarse_and_the_exact_time_is_sealed(tmp_path: Path) -> None:
    exact = 1_795_000_123.456
    async with Store.open(tmp_path, b"k" * 32, crypto.Algorithm.CHACHA20_POLY1305, commit_interval=0.01) as store:
        await store.add_event(Event(device_id="mqtt:a", kind=EventKind.MOTION, state="on", ts=exact))
        await store.add_readings([Reading("mqtt:a", Quantity.TEMPERATURE, 1.0, exact)])
        await store.upsert_device(DeviceInfo(device_id="mqtt:a", driver="mqtt", kind=DeviceKind.SENSOR), seen=exact)
        await store.audit("cli", "rename", "mqtt:a")
        await store.flush()
        plain = store.read(
            lambda c: [
                *c.execute(sa.select(schema.items.c.ts)).scalars(),
                *c.execute(sa.select(schema.reading_frames.c.ts_min, schema.reading_frames.c.ts_max)).one(),
                *c.execute(sa.select(schema.audit.c.ts)).scalars(),
            ]
        )
        seen = store.read(lambda c: c.execute(sa.select(schema.devices.c.first_seen, schema.devices.c.last_seen)).one())
        assert all(t % COARSE_S == 0 for t in plain), plain
        assert seen[0] % 86_400 == 0 and seen[1] % SEEN_S == 0
        # What the uplink sends carries the exact time, from inside the sealed record.
        [item] = await store.pending(Lane.EVENTS)
        assert item.ts == exact
