"""The data plane: lane ingest (exactly-once by ``(hub, lane, seq)``), device upserts, and reading/event queries.

Ingest is the hot path: a batch is decoded by msgspec straight into typed structs (that *is* the validation, with
a readings batch's strings checked once per distinct value), then written in one transaction: on PostgreSQL readings
by binary ``COPY`` (:mod:`.partitions`: straight into the table, or through a staging table when the register already
holds part of the batch) and the other lanes by one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` over the batch as a
JSON record set; on SQLite by ``executemany`` in chunks. The ack is built only after the commit returned. On
PostgreSQL that transaction is also the request's hub check: its first statement checks the hub and reads the
household's erasure watermark (:func:`_admit`), so a request costs one pool checkout and one transaction.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection, Engine

from cloud_sync.protocol import (
    ClipsBatch,
    DeviceRecord,
    DiagnosticsBatch,
    EventsBatch,
    IngestAck,
    ProtocolError,
    ReadingColumns,
    ReadingItem,
    ReadingsBatch,
    SensorReadings,
    TypedBatch,
    decode_batch,
    decode_columns,
    decompress_bounded,
)
from cloud_sync.register import alarm_txn, chunks, db, partitions
from cloud_sync.register.auth import HubIdentity, Principal
from cloud_sync.register.errors import Forbidden, Invalid
from cloud_sync.register.notify.alarms import (
    BATTERY_ALERT_MAX,
    notify_dispatchers,
    on_battery,
    on_events,
    on_storage_low,
)
from cloud_sync.register.registry import Registry, write_audit

_Rows = list[dict[str, Any]]
Batch = TypedBatch | ReadingColumns
"""A decoded batch: a lane's items, or a readings batch sent as columns."""
SQLITE_CHUNK = 1000

DECODE_SLOTS = 2
"""Bulk batches of a process inflated and decoded at once. Decoding is pure Python under the GIL, so more at once is
no faster; each one more is a thread the event loop and a smoke alarm's thread take turns with for the GIL."""
_decoding = threading.BoundedSemaphore(DECODE_SLOTS)


class WriteGate:
    """One SQLite writer at a time, in this process; a waiting urgent writer (the alarm lane) goes first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextlib.contextmanager
    def hold(self, *, urgent: bool) -> Iterator[None]:
        with self._cond:
            self._urgent_waiting += urgent
            try:
                while self._busy or (not urgent and self._urgent_waiting):
                    self._cond.wait()
            finally:
                self._urgent_waiting -= urgent
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


_GATES: weakref.WeakKeyDictionary[Registry, WriteGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def _gate(registry: Registry) -> WriteGate:
    with _GATES_LOCK:
        gate = _GATES.get(registry)
        if gate is None:
            gate = _GATES[registry] = WriteGate()
        return gate


def _reading_rows(b: ReadingsBatch, household: str, now: float) -> _Rows:
    hub = b.hub_id
    return [
        {
            "hub_id": hub,
            "seq": it.seq,
            "household_id": household,
            "device_id": it.body.device_id,
            "quantity": it.body.quantity,
            "channel": it.body.channel,
            "value": it.body.value,
            "ts": it.body.ts,
            "received_at": now,
        }
        for it in b.items
    ]


def _event_rows(b: EventsBatch, household: str, now: float) -> _Rows:
    return [
        {
            "hub_id": b.hub_id,
            "lane": b.lane,
            "seq": it.seq,
            "household_id": household,
            "device_id": it.body.device_id,
            "kind": it.body.kind,
            "state": it.body.state,
            "attrs": it.body.attrs,
            "ts": it.body.ts,
            "received_at": now,
        }
        for it in b.items
    ]


def _clip_rows(b: ClipsBatch, household: str, now: float) -> _Rows:
    return [
        {
            "hub_id": b.hub_id,
            "seq": it.seq,
            "household_id": household,
            "clip_id": it.body.clip_id,
            "device_id": it.body.device_id,
            "started": it.body.started,
            "duration_s": it.body.duration_s,
            "size": it.body.size,
            "sha256": it.body.sha256,
            "reason": it.body.reason,
            "received_at": now,
        }
        for it in b.items
    ]


def _diag_rows(b: DiagnosticsBatch, household: str, now: float) -> _Rows:
    return [
        {"hub_id": b.hub_id, "seq": it.seq, "household_id": household, "ts": it.ts, "body": it.body, "received_at": now}
        for it in b.items
    ]


_ROWS: dict[type, Callable[[Any, str, float], _Rows]] = {
    ReadingsBatch: _reading_rows,
    EventsBatch: _event_rows,
    ClipsBatch: _clip_rows,
    DiagnosticsBatch: _diag_rows,
}


HubCheck = Callable[[Connection], None]
"""The hub's full check in the database (enrolled, not revoked, its current certificate), run on the connection
given; raises to refuse the request, and makes a pending renewed certificate current. Whatever it writes is
committed with the batch."""

# The hub's check and its household's erasure watermark in one statement (PostgreSQL): the household row FOR SHARE,
# so that an erasure's watermark update waits for the batches in flight and later batches read its new value (the
# lock's recheck reads the row's latest version). Sent through the driver, prepared after a few uses.
_ADMIT = (
    "SELECT h.household_id, h.revoked, h.cert_sha256, hh.erased_before FROM hubs h"
    " JOIN households hh ON hh.id = h.household_id WHERE h.id = %s FOR SHARE OF hh"
)
# A readings batch on a database with chunks also takes the hub's readings lock (chunks.lock_hub, the same key) in the
# admission statement: shared for rows, exclusive for a batch that writes chunks, so the lock costs no statement.
_ADMIT_LOCKING = {
    exclusive: _ADMIT.replace(
        " FROM hubs h",
        f", {'pg_advisory_xact_lock' if exclusive else 'pg_advisory_xact_lock_shared'}"
        f"(hashtextextended(h.id, {chunks.LOCK_SEED})) FROM hubs h",
    )
    for exclusive in (False, True)
}


def ingest_body(
    registry: Registry,
    hub: HubIdentity,
    lane: str,
    compressed: bytes,
    *,
    engine: Engine | None = None,
    check: HubCheck | None = None,
    pipelined: bool = True,
    columns: bool = False,
) -> IngestAck:
    """Check the hub (``check``), decompress (bounded), decode and store one batch; returns the ack after commit.
    ``columns``: a readings batch sent as :class:`ReadingColumns`.
    ``engine``: another pool than the registry's (the alarm lane's). ``pipelined``: an alarm batch on the alarm
    lane's pool goes through :mod:`.alarm_txn` (two round trips); False keeps it on the Python path (benches, the
    test that compares the two).

    On PostgreSQL the check is the first statement of the transaction that then stores the batch, and reads the
    erasure watermark too (:func:`_admit`): one pool checkout, one transaction and one statement before the batch's
    own per request, where there were two of each and two statements. On SQLite the check stays a transaction of its
    own, committed before the batch waits for the write gate (a read transaction that later writes could not take
    SQLite's lock)."""
    eng = engine or registry.engine
    if eng.dialect.name == "sqlite":
        if check is not None:
            with eng.begin() as conn:
                check(conn)
        return ingest(registry, hub, _decode(lane, compressed, columns), engine=engine)
    with eng.connect() as conn:
        # Begun for SQLAlchemy (nothing is sent): a connection PostgreSQL dropped under alarm_txn then fails the
        # rollback here, which SQLAlchemy takes as a disconnect and replaces the pool's connections, as for its own.
        conn.begin()
        if pipelined and lane == "alarm" and eng is registry.urgent_engine is not registry.engine:
            ack = _alarm_pipelined(registry, hub, compressed, conn)
            if ack is not None:
                return ack
            conn.rollback()  # nothing to roll back on the wire: alarm_txn left the connection idle
            conn.begin()
        if lane != "readings" or not chunks.available(conn):
            cutoff = _admit(registry, conn, hub, check)
            return _ingest_postgres(registry, hub, _decode(lane, compressed, columns), conn, cutoff)
        # The batch is decoded first, to know which lock it takes; a body that does not decode is refused only after
        # the hub's check, as on every other path (a refused hub learns nothing of its body).
        try:
            batch = _decode(lane, compressed, columns)
        except ProtocolError:
            _admit(registry, conn, hub, check)
            raise
        exclusive = registry.settings.readings_chunks and _packs(batch)
        cutoff = _admit(registry, conn, hub, check, locking=exclusive)
        return _ingest_postgres(registry, hub, batch, conn, cutoff, locked=exclusive)


def _alarm_pipelined(registry: Registry, hub: HubIdentity, compressed: bytes, conn: Connection) -> IngestAck | None:
    """An alarm batch through :mod:`.alarm_txn`; ``None`` leaves it to the Python path, which gives whatever is out
    of the ordinary the answer it always had (a body that does not decode, a batch naming another hub, an empty
    one, a hub the admission statement does not admit), in the same order (the hub is refused before its body)."""
    try:
        batch = _decode("alarm", compressed)
    except ProtocolError:
        return None
    if batch.hub_id != hub.hub_id or not batch.items:
        return None
    rows = _event_rows(batch, hub.household_id, time.time())  # type: ignore[arg-type]
    done = alarm_txn.store(conn.connection.dbapi_connection, _ADMIT, hub, rows)  # type: ignore[arg-type]
    if done is None:
        return None
    conn.commit()  # alarm_txn committed; this only ends SQLAlchemy's transaction
    # As in _admit: the alarm lane's last-seen is written off its path (lastseen.py).
    registry.mark_seen(conn, hub.hub_id, time.time(), defer=True)
    return _acked(registry, batch, done.erased, done.stored, done.raised)


def _admit(
    registry: Registry, conn: Connection, hub: HubIdentity, check: HubCheck | None, *, locking: bool | None = None
) -> float:
    """The hub's check and the erasure watermark, in ``conn``'s transaction (PostgreSQL); returns the watermark.

    A hub its row admits as it is (enrolled in the certificate's household, not revoked, this certificate) costs
    one statement. Any other goes through the full ``check``, which refuses it, or makes its renewed certificate
    current (in this transaction) after which it is admitted. ``locking``: take the hub's readings lock too, shared
    (False) or exclusive (True)."""
    sql = _ADMIT if locking is None else _ADMIT_LOCKING[locking]
    for _ in range(2):
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, (hub.hub_id,))
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is not None and row[0] == hub.household_id and not row[1] and row[2] == hub.cert_sha256:
            # The alarm lane's last-seen is written off its path (lastseen.py), not in the alarm's transaction.
            registry.mark_seen(conn, hub.hub_id, time.time(), defer=conn.engine is registry.urgent_engine)
            return float(row[3] or 0.0)
        if check is None:
            break
        check(conn)
    raise Forbidden("this hub is not enrolled", code="hub_unknown")


def _decode(lane: str, compressed: bytes, columns: bool = False) -> Batch:
    if lane == "alarm":
        return decode_batch(lane, decompress_bounded(compressed))
    with _decoding:
        payload = decompress_bounded(compressed)
        return decode_columns(lane, payload) if columns else decode_batch(lane, payload)


def _packs(batch: Batch) -> bool:
    """Whether the readings batch has a sensor with enough readings for a chunk (:func:`chunks.packs`)."""
    if isinstance(batch, ReadingColumns):
        return any(len(s.seqs) >= chunks.CHUNK_MIN for s in batch.sensors)
    return chunks.packs(batch.items)  # type: ignore[arg-type]


def ingest(registry: Registry, hub: HubIdentity, batch: Batch, *, engine: Engine | None = None) -> IngestAck:
    """Store a decoded batch (the hub already checked); returns the ack after commit."""
    eng = engine or registry.engine
    if eng.dialect.name != "sqlite":
        with eng.connect() as conn:
            conn.begin()
            return _ingest_postgres(registry, hub, batch, conn, _erasure_cutoff(conn, hub.household_id) or 0.0)
    if isinstance(batch, ReadingColumns):
        batch = batch.as_batch()  # the pilot's SQLite stores rows only
    _own_batch(hub, batch)
    if not batch.items:
        return _empty_ack(batch)
    total = len(batch.items)
    erased = stored = raised = 0
    rows = _ROWS[type(batch)](batch, hub.household_id, time.time())
    table = db.LANE_TABLES[batch.lane]
    # SQLite has one writer: take turns through the gate instead of SQLite's busy back-off, alarms first, and
    # commit big batches in chunks so an alarm waits for at most one chunk. Chunks are idempotent like the
    # whole batch, and the ack below still comes only after the last one committed.
    gate = _gate(registry)
    urgent = batch.lane == "alarm"
    for start in range(0, len(rows), SQLITE_CHUNK):
        with gate.hold(urgent=urgent), registry.engine.begin() as conn:
            # Take SQLite's write lock before reading the watermark (pysqlite opens the transaction only at the
            # first write): an erasure's watermark is then either seen here or committed after these rows.
            _lock_household(conn, hub.household_id)
            kept = _after_erasure(conn, hub.household_id, rows[start : start + SQLITE_CHUNK])
            erased += min(SQLITE_CHUNK, total - start) - len(kept)
            stored += db.insert_many_ignore(conn, table, kept)
            raised += _raise_alarms(conn, hub, batch.lane, kept)
    return _acked(registry, batch, erased, stored, raised)


def _own_batch(hub: HubIdentity, batch: Batch) -> None:
    if batch.hub_id != hub.hub_id:
        raise Forbidden("batch hub_id does not match the client certificate", code="wrong_hub")


def _empty_ack(batch: Batch) -> IngestAck:
    return IngestAck(lane=batch.lane, acked_seq=-1, stored=0, duplicates=0)


def _size(batch: Batch) -> int:
    return len(batch) if isinstance(batch, ReadingColumns) else len(batch.items)


def _acked(registry: Registry, batch: Batch, erased: int, stored: int, raised: int) -> IngestAck:
    """The ack of a committed batch (and the dispatchers woken for the alarms it raised)."""
    if raised:
        notify_dispatchers(registry.engine)  # the dispatchers' key is the registry's engine, whichever pool stored
    # All items of the batch are now held (stored just now, or by an earlier send) or were erased by the household.
    total = _size(batch)
    last = batch.last_seq if isinstance(batch, ReadingColumns) else batch.items[-1].seq
    return IngestAck(lane=batch.lane, acked_seq=last, stored=stored, duplicates=total - erased - stored)


def _ingest_postgres(
    registry: Registry,
    hub: HubIdentity,
    batch: Batch,
    conn: Connection,
    cutoff: float,
    *,
    locked: bool | None = None,
) -> IngestAck:
    """Stores a batch on PostgreSQL in ``conn``'s transaction, begun with the watermark ``cutoff`` read FOR SHARE,
    and commits it; whatever fails leaves the transaction to be rolled back when ``conn`` is closed. ``locked``: the
    admission took the hub's readings lock (exclusive: True)."""
    _own_batch(hub, batch)
    if not _size(batch):
        conn.commit()  # what the hub's check wrote
        return _empty_ack(batch)
    if isinstance(batch, ReadingsBatch | ReadingColumns):
        erased, stored, raised = _readings_postgres(registry, conn, hub, batch, cutoff, locked)
        return _acked(registry, batch, erased, stored, raised)
    rows = _ROWS[type(batch)](batch, hub.household_id, time.time())
    kept = _since(rows, cutoff)
    stored = db.insert_many_ignore(conn, db.LANE_TABLES[batch.lane], kept)
    raised = _raise_alarms(conn, hub, batch.lane, kept)
    conn.commit()
    return _acked(registry, batch, len(batch.items) - len(kept), stored, raised)


def _readings_postgres(
    registry: Registry,
    conn: Connection,
    hub: HubIdentity,
    batch: ReadingsBatch | ReadingColumns,
    cutoff: float,
    locked: bool | None = None,
) -> tuple[int, int, int]:
    """Stores a readings batch on PostgreSQL in ``conn``'s transaction and commits; returns ``(erased, stored,
    alarms raised)``.

    A batch that writes chunks goes as columns (:func:`_store_packed`; a hub sends columns only for such a batch,
    and one it sent as items is turned into them); any other as rows (:func:`_store_rows`): first straight into
    ``readings`` by ``COPY`` (no stage, no ``ON CONFLICT``), the common case, a batch the register holds nothing of.
    If it holds any of it (a resend after a lost ack, two sends racing), the primary key refuses that ``COPY`` whole;
    the transaction is rolled back and the batch goes through the stage in a new one, which stores each seq at most
    once. Either way nothing is acked before the commit."""
    now = time.time()
    total = _size(batch)
    # The admission decided it already when it took the hub's lock (ingest_body): exclusive to write chunks.
    packing = (
        locked if locked is not None else chunks.available(conn) and registry.settings.readings_chunks and _packs(batch)
    )
    if packing:
        sensors = batch.sensors if isinstance(batch, ReadingColumns) else chunks.columns_of(batch.items)
    else:
        items = batch.items() if isinstance(batch, ReadingColumns) else batch.items
    for direct in (True, False):
        try:
            if packing:
                kept = _since_columns(sensors, cutoff)
                stored = _store_packed(conn, hub, kept, now, locked=locked)
                kept_n = sum(len(s.seqs) for s in kept)
                batteries = [s for s in kept if s.quantity == "battery"]
                battery = chunks.column_rows(batteries, hub.hub_id, hub.household_id, now)
            else:
                fresh = items if not cutoff else [it for it in items if it.body.ts >= cutoff]
                stored = _store_rows(conn, hub, fresh, now, direct=direct, locked=locked)
                kept_n = len(fresh)
                of_batteries = [it for it in fresh if it.body.quantity == "battery"]
                battery = partitions.reading_rows(of_batteries, hub.hub_id, hub.household_id, now)
            low = [_row_dict(r) for r in battery if r[5] < BATTERY_ALERT_MAX]
            raised = on_battery(conn, hub.hub_id, hub.household_id, low) if low else 0
            conn.commit()
            return total - kept_n, stored, raised
        except psycopg.errors.UniqueViolation:
            # The hub's check (done in this transaction) is not repeated: the request was admitted; a last-seen it
            # wrote is lost with the rollback, which only delays that coarse figure by a minute. The watermark is
            # read again, FOR SHARE, in the new transaction.
            conn.rollback()
            if not direct:
                raise
            conn.begin()
            cutoff = _erasure_cutoff(conn, hub.household_id) or 0.0
            locked = None  # the rollback let the lock go
    raise AssertionError("unreachable: the stage path returns or raises")


def _store_packed(
    conn: Connection, hub: HubIdentity, sensors: list[SensorReadings], now: float, *, locked: bool | None
) -> int:
    """Stores a batch that writes chunks (cloud_sync/register/chunks.py); returns how many readings were new. Under
    the hub's lock held exclusively, whatever the register holds of the batch's seqs (rows or chunks) is dropped
    first; sensors with many readings go as chunks, the rest as rows. No Python step per reading unless some of the
    batch is held already or a sensor's readings must be cut."""
    if not sensors:
        return 0
    # The admission took the lock exclusively (_packs), or none (a retry).
    assert locked is not False, "chunks written under the shared lock"
    if locked is None:
        chunks.lock_hub(conn, hub.hub_id, exclusive=True)
    have = chunks.held(conn, hub.hub_id, [seq for s in sensors for seq in s.seqs])
    if have:
        sensors = _kept(sensors, lambda seq, ts: (seq, ts) not in have)
    packed, rows = chunks.split_columns(sensors, hub.hub_id, hub.household_id, now)
    stored = chunks.copy_chunks(conn, packed)
    if packed:
        chunks.raise_mark(conn, hub.hub_id, max(c.seq_last for c in packed))
    # Nothing of the rest is held (looked up above, under the lock every readings batch of this hub takes).
    return stored + partitions.copy_readings(conn, rows, direct=True)


def _store_rows(
    conn: Connection, hub: HubIdentity, items: list[ReadingItem], now: float, *, direct: bool, locked: bool | None
) -> int:
    """Stores readings as rows; returns how many were new (``direct``: see :func:`partitions.copy_readings`). Where
    the database has chunks, under the hub's lock held shared (or the exclusive one the admission took): a batch
    reaching at or below the hub's chunk mark drops what the chunks hold first; the rows' primary key keeps rows
    once."""
    if not items:
        return 0
    if chunks.available(conn):
        if locked is None:
            chunks.lock_hub(conn, hub.hub_id, exclusive=False)
        seqs = [it.seq for it in items]
        if chunks.mark(conn, hub.hub_id) >= min(seqs):
            have = chunks.held(conn, hub.hub_id, seqs, rows=False)
            items = [it for it in items if (it.seq, it.body.ts) not in have]
    return partitions.copy_readings(
        conn, partitions.reading_rows(items, hub.hub_id, hub.household_id, now), direct=direct
    )


def _kept(sensors: list[SensorReadings], keep: Callable[[int, float], bool]) -> list[SensorReadings]:
    """The sensors' readings ``(seq, ts)`` that ``keep`` keeps, each sensor's in its order; sensors left with none
    are dropped."""
    out = []
    for s in sensors:
        kept = [(seq, ts, v) for seq, ts, v in zip(s.seqs, s.ts, s.values, strict=True) if keep(seq, ts)]
        if len(kept) == len(s.seqs):
            out.append(s)
        elif kept:
            seqs, ts, values = map(list, zip(*kept, strict=True))
            out.append(SensorReadings(s.device_id, s.quantity, s.channel, seqs, ts, values))
    return out


def _since_columns(sensors: list[SensorReadings], cutoff: float) -> list[SensorReadings]:
    """The readings at or after the erasure watermark ``cutoff`` (a sensor wholly after it is kept as it is)."""
    if not cutoff:
        return sensors
    if all(min(s.ts) >= cutoff for s in sensors):
        return sensors
    return _kept(sensors, lambda _seq, ts: ts >= cutoff)


def _since(rows: _Rows, cutoff: float) -> _Rows:
    """The rows recorded at or after the erasure watermark ``cutoff`` (all of them when there is none)."""
    if not cutoff:
        return rows
    return [r for r in rows if (r["ts"] if "ts" in r else r["started"]) >= cutoff]


def _row_dict(row: partitions.ReadingRow) -> dict[str, Any]:
    return dict(zip(partitions.COLUMNS, row, strict=True))


def _raise_alarms(conn: Connection, hub: HubIdentity, lane: str, rows: _Rows) -> int:
    """Opens the alarms these rows raise in the same transaction, so an alarm is stored with its event or not at
    all (alarms are idempotent: a batch sent twice opens each once)."""
    if lane == "readings":
        # One cheap pass over the batch; a low battery opens at most one alert per device a week (see on_battery).
        low = [r for r in rows if r["quantity"] == "battery" and r["value"] < BATTERY_ALERT_MAX]
        return on_battery(conn, hub.hub_id, hub.household_id, low) if low else 0
    if lane == "diagnostics":
        low = [r for r in rows if isinstance(r["body"], dict) and r["body"].get("event") == "storage_low"]
        return on_storage_low(conn, hub.hub_id, hub.household_id, low) if low else 0
    if lane not in ("alarm", "events"):
        return 0
    relevant = [r for r in rows if r["kind"] in ("smoke", "availability")]
    return on_events(conn, hub.hub_id, hub.household_id, lane, relevant) if relevant else 0


def _lock_household(conn: Connection, household_id: str) -> None:
    conn.execute(
        db.households.update()
        .where(db.households.c.id == household_id)
        .values(erased_before=db.households.c.erased_before)
    )


def _after_erasure(conn: Connection, household_id: str, rows: _Rows) -> _Rows:
    """Drops items recorded before the household's last erasure (the hub may deliver them late).

    Read in the insert's own transaction: on PostgreSQL with FOR SHARE, so an erasure's watermark update waits for
    batches in flight and later batches see it; on SQLite under the write lock (see :func:`_lock_household`), so a
    racing batch can never land after the erasure's deletes.
    """
    return _since(rows, _erasure_cutoff(conn, household_id) or 0.0)


def _erasure_cutoff(conn: Connection, household_id: str) -> float | None:
    """The household's erasure watermark, read FOR SHARE (see :func:`_after_erasure`)."""
    cutoff = conn.execute(
        select(db.households.c.erased_before).where(db.households.c.id == household_id).with_for_update(read=True)
    ).scalar_one_or_none()
    return float(cutoff) if cutoff else None


def upsert_devices(registry: Registry, hub: HubIdentity, records: list[DeviceRecord]) -> int:
    if not records:
        return 0
    now = time.time()
    rows = [
        {
            "household_id": hub.household_id,
            "device_id": r.device_id,
            "hub_id": hub.hub_id,
            "kind": r.kind,
            "name": r.name,
            "model": r.model,
            "room": r.room,
            "updated_at": now,
        }
        for r in records
    ]
    stmt = db.upsert(registry.engine, db.devices, ["hub_id", "kind", "name", "model", "room", "updated_at"])
    with registry.engine.begin() as conn:
        erasing = conn.execute(
            select(db.commands.c.id).where(
                db.commands.c.hub_id == hub.hub_id, db.commands.c.kind == "erase", db.commands.c.status == "pending"
            )
        ).first()
        if erasing is not None:
            # The household erased its data and this hub has yet to erase its copy: a device list it sends now
            # is from before, and would bring back names the erasure removed. The hub resends after it erased.
            return 0
        conn.execute(stmt, rows)
        write_audit(conn, hub.actor, "devices.upsert", hub.household_id, count=len(rows))
    return len(rows)


def devices(registry: Registry, household_id: str, reader: Principal) -> list[dict[str, Any]]:
    with registry.engine.begin() as conn:
        rows = conn.execute(
            select(db.devices).where(db.devices.c.household_id == household_id).order_by(db.devices.c.device_id)
        ).mappings()
        out = [dict(r) for r in rows]
        if reader.is_operator:
            write_audit(conn, reader.actor, "devices.read", household_id)
    return out


def query(
    registry: Registry,
    kind: str,
    household_id: str,
    reader: Principal,
    *,
    device_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Readings or events (``kind``) of one household, oldest first, audited when an operator reads them."""
    if since is not None and until is not None and until < since:
        raise Invalid("until must not be before since")
    with registry.engine.begin() as conn:
        table: Any = (
            chunks.source(conn, household_id=household_id, since=since, until=until)
            if kind == "readings"
            else db.events
        )
        out = _query(conn, table, household_id, device_id, since, until, limit)
        if reader.is_operator:
            write_audit(conn, reader.actor, f"{kind}.read", household_id, rows=len(out))
    return out


def _query(
    conn: Connection,
    table: Any,
    household_id: str,
    device_id: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    conds = [table.c.household_id == household_id]
    if device_id is not None:
        conds.append(table.c.device_id == device_id)
    if since is not None:
        conds.append(table.c.ts >= since)
    if until is not None:
        conds.append(table.c.ts < until)
    cols = [c for c in table.c if c.name not in ("household_id", "received_at")]
    # Ties on ts in the hub's order (a chunk's readings and rows interleave on the same clock).
    order = [table.c.ts, table.c.hub_id, table.c.seq] if "seq" in table.c else [table.c.ts]
    return [dict(r) for r in conn.execute(select(*cols).where(and_(*conds)).order_by(*order).limit(limit)).mappings()]


def items(registry: Registry, hub_id: str, lane: str) -> list[tuple[int, dict[str, Any]]]:
    """What the register holds for ``(hub, lane)`` in seq order, as ``(seq, body)`` — for tests and support."""
    table: Any = db.LANE_TABLES[lane]
    skip = {"hub_id", "seq", "household_id", "received_at", "lane"}
    with registry.engine.connect() as conn:
        if table is db.readings:
            table = chunks.source(conn, hub_id=hub_id)
        order = [table.c.seq, table.c.ts] if lane == "readings" else [table.c.seq]
        q = select(table).where(table.c.hub_id == hub_id).order_by(*order)
        if table is db.events:
            q = q.where(table.c.lane == lane)
        out = []
        for r in conn.execute(q).mappings():
            if lane == "diagnostics":
                out.append((r["seq"], dict(r["body"])))
            else:
                body = {k: v for k, v in r.items() if k not in skip}
                if body.get("channel") == "":  # as the hub sent it: a reading without a channel has none
                    del body["channel"]
                out.append((r["seq"], body))
    return out
