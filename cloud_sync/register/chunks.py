"""Readings stored in packed chunks on PostgreSQL (docs/scale.md, "Readings stored in packed chunks").

A chunk is one sensor's readings ``(device_id, quantity, channel)`` of one batch, in seq order, as one row of
``reading_chunks`` with the seqs, times and values as arrays. PostgreSQL pays per row (a heap tuple, a primary-key
entry, a chart-index entry), so a catch-up batch of 5,000 readings of 60 sensors costs it 60 rows instead of 5,000.
Only sensors with at least :data:`CHUNK_MIN` readings in a batch are chunked; a steady batch (one reading per sensor)
stays rows of ``readings``, where chunks would cost more (measured).

``seq_first`` and ``seq_last`` are the chunk's own first and last seq, ``ts_first`` and ``ts_last`` its earliest and
latest reading time; a chunk never spans more than :data:`MAX_SPAN_S`, so a chart finds every chunk reaching its span
by ``ts_first >= since - MAX_SPAN_S``. The table is partitioned by week on ``ts_first`` like ``readings``
(:mod:`.partitions`), so retention drops whole weeks.

**Each reading once, across both tables.** A resend may be cut differently from the first send (more items had
queued), so a reading first stored as a row can come again in a chunk, or the other way round. Deduplication is
therefore by ``(hub, seq, ts)`` across both tables, under a per-hub advisory lock that every readings transaction
takes (:func:`lock_hub`; a request takes it in its admission statement, cloud_sync/register/ingest.py): exclusive for
a batch that writes chunks (:func:`packs`), shared for one that writes rows only.

* A batch that writes chunks, holding the lock exclusively, looks up what the register already holds near its seqs
  in both tables (:func:`held`: per run of them, one range of ``(hub_id, seq_last)`` in the chunks and one of the
  primary key in the rows), drops it, writes the rest, and raises the hub's *chunk mark* (``hub_chunk_marks``: the
  highest seq it has ever stored in a chunk).
* A batch that writes rows only, holding the lock shared, reads the mark after the lock (so any chunk batch that
  held it has committed and is seen): a batch wholly above the mark cannot meet a chunk, and goes as it always did
  (the primary key of ``readings`` takes care of rows); one that reaches below it drops what the chunks hold first.

**Rollback.** A release that does not know chunks would neither show nor erase them, so the release that brought
migration 0012 read, exported and erased chunks but wrote them only when told to; from the release after it,
``Settings.readings_chunks`` is on by default, and a rollback to that release is safe (docs/register.md, the rollback
rule). A rollback to a release before 0012 needs ``db downgrade 0011_households_unwatched`` first.
"""

from __future__ import annotations

import itertools
import math
import struct
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Double,
    Engine,
    FromClause,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    func,
    select,
    text,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import visitors

from cloud_sync.protocol import ReadingItem, SensorReadings
from cloud_sync.register import db, partitions

CHUNK_MIN = 5
"""Fewest readings of one sensor in a batch that go as a chunk; fewer stay rows. From about five readings a chunk,
chunks cost PostgreSQL and the disk less than rows on every figure measured (bench/readings_chunks.py)."""
CHUNK_MAX = 1_000
"""Most readings in one chunk: a chunk's arrays are rewritten whole when an erasure cuts it."""
MAX_SPAN_S = 86_400.0
"""Longest time a chunk spans: a sensor's readings further apart in one batch (a hub whose clock was set) start a
new chunk, and a reader of a time span looks back this much on ``ts_first``."""
MAX_SEQ_SPAN = 40_000
"""Widest seq range a chunk covers (``seq_last - seq_first``), written so since the release after 0012: twice the
most readings a batch holds, so an honest hub's sensor is cut only across a gap its erasures left. It bounds where
:func:`held` looks for the chunks that can hold a seq."""
RUN_GAP = 64
""":func:`held` looks up a batch's seqs as runs split where two are more than this apart, so what it reads is
bounded by the batch's size, never by the hub's history (a hostile hub sending seqs 1 and 2^62)."""

metadata = MetaData()
"""PostgreSQL only (made by migration 0012): not in :data:`cloud_sync.register.db.metadata`, which SQLite builds."""

reading_chunks = Table(
    "reading_chunks",
    metadata,
    Column("hub_id", String(64), nullable=False),
    Column("seq_first", BigInteger, nullable=False),
    Column("seq_last", BigInteger, nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("channel", String(64), nullable=False, server_default=""),
    Column("ts_first", Double, nullable=False),
    Column("ts_last", Double, nullable=False),
    Column("n", Integer, nullable=False),
    Column("seqs", ARRAY(BigInteger), nullable=False),
    Column("ts", ARRAY(Double), nullable=False),
    Column("vals", ARRAY(Double), nullable=False),
    Column("vmin", Double, nullable=False),
    Column("vmax", Double, nullable=False),
    Column("vsum", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    PrimaryKeyConstraint("hub_id", "seq_first", "ts_first", name="reading_chunks_pk"),
    Index("reading_chunks_hub_seq", "hub_id", "seq_last"),
    Index("reading_chunks_sensor_ts", "household_id", "device_id", "quantity", "ts_first"),
    Index("reading_chunks_received", "received_at", postgresql_using="brin", postgresql_with={"autosummarize": "on"}),
)

hub_chunk_marks = Table(
    "hub_chunk_marks",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("chunked_to", BigInteger, nullable=False),
)

COLUMNS = tuple(c.name for c in reading_chunks.columns)
COPY_TYPES = [
    "text",
    "int8",
    "int8",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "int4",
    "int8[]",
    "float8[]",
    "float8[]",
    "float8",
    "float8",
    "float8",
    "float8",
]
_COPY_SQL = f"COPY reading_chunks ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# What copy_chunks sends: the three arrays already in PostgreSQL's binary array format (:func:`binary_array`), given
# to psycopg as bytes, which it passes through; the server reads them with the columns' own types.
_WIRE_TYPES = [*COPY_TYPES[:10], "bytea", "bytea", "bytea", *COPY_TYPES[13:]]
_INT8_OID, _FLOAT8_OID = 20, 701


class Chunk(NamedTuple):
    """A row of ``reading_chunks`` in :data:`COLUMNS` order."""

    hub_id: str
    seq_first: int
    seq_last: int
    household_id: str
    device_id: str
    quantity: str
    channel: str
    ts_first: float
    ts_last: float
    n: int
    seqs: list[int]
    ts: list[float]
    vals: list[float]
    vmin: float
    vmax: float
    vsum: float
    """The values' least, greatest and sum, so a chart reads a chunk wholly inside one bucket without its arrays."""
    received_at: float


# --------------------------------------------------------------------------------------------------- where they are

_AVAILABLE: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def available(conn: Connection) -> bool:
    """Whether the database has ``reading_chunks`` (PostgreSQL from migration 0012 on); remembered per engine."""
    if conn.dialect.name != "postgresql":
        return False
    engine = conn.engine
    known = _AVAILABLE.get(engine)
    if known is None:
        known = bool(conn.execute(text("SELECT to_regclass('reading_chunks') IS NOT NULL")).scalar())
        _AVAILABLE[engine] = known
    return known


def forget(engine: Engine) -> None:
    """Look again at the next :func:`available` (after a migration in this process)."""
    _AVAILABLE.pop(engine, None)


# --------------------------------------------------------------------------------------------------- writing


def split(
    items: Sequence[ReadingItem], hub_id: str, household_id: str, received_at: float
) -> tuple[list[Chunk], list[ReadingItem]]:
    """A batch's readings as chunks (sensors with at least :data:`CHUNK_MIN` of them) and the items left as rows:
    :func:`split_columns` for items. Deterministic, so a resend cut the same way gives the same chunks."""
    packed, _rows = split_columns(columns_of(items), hub_id, household_id, received_at)
    chunked = {seq for c in packed for seq in c.seqs}  # a batch's seqs are unique
    return packed, [it for it in items if it.seq not in chunked]


def columns_of(items: Iterable[ReadingItem]) -> list[SensorReadings]:
    """Items as each sensor's columns, each sensor's readings in the items' order (the register's side of
    :func:`cloud_sync.protocol.reading_columns`, for a batch a hub sent as items)."""
    return [
        SensorReadings(
            device_id, quantity, channel, [it.seq for it in g], [it.body.ts for it in g], [it.body.value for it in g]
        )
        for (device_id, quantity, channel), g in by_sensor(items).items()
    ]


def split_columns(
    sensors: Sequence[SensorReadings], hub_id: str, household_id: str, received_at: float
) -> tuple[list[Chunk], list[partitions.ReadingRow]]:
    """:func:`split` for a batch sent as columns: the same chunks for the same readings, and the rest as rows of
    ``readings``. A sensor's arrays are sliced, not walked, unless they must be cut (more than :data:`CHUNK_MAX`
    readings, or more than :data:`MAX_SPAN_S` or :data:`MAX_SEQ_SPAN` between them)."""
    chunks: list[Chunk] = []
    rows: list[partitions.ReadingRow] = []
    for s in sensors:
        n = len(s.seqs)
        if n < CHUNK_MIN:
            rows += column_rows([s], hub_id, household_id, received_at)
            continue
        whole = n <= CHUNK_MAX and s.seqs[-1] - s.seqs[0] <= MAX_SEQ_SPAN and max(s.ts) - min(s.ts) <= MAX_SPAN_S
        for a, b in [(0, n)] if whole else _cuts(s.ts, s.seqs):
            part = SensorReadings(s.device_id, s.quantity, s.channel, s.seqs[a:b], s.ts[a:b], s.values[a:b])
            if b - a < CHUNK_MIN:
                rows += column_rows([part], hub_id, household_id, received_at)
                continue
            sensor = (s.device_id, s.quantity, s.channel)
            chunks.append(pack(hub_id, household_id, sensor, part.seqs, part.ts, part.values, received_at))
    return chunks, rows


def column_rows(
    sensors: Iterable[SensorReadings], hub_id: str, household_id: str, now: float
) -> list[partitions.ReadingRow]:
    """The rows of ``readings`` for sensors' readings sent as columns (:func:`partitions.reading_rows` for items)."""
    return [
        (hub_id, seq, household_id, s.device_id, s.quantity, value, ts, now, s.channel)
        for s in sensors
        for seq, ts, value in zip(s.seqs, s.ts, s.values, strict=True)
    ]


def pack(
    hub_id: str,
    household_id: str,
    sensor: tuple[str, str, str],
    seqs: list[int],
    ts: list[float],
    vals: list[float],
    received_at: float,
) -> Chunk:
    """One sensor's readings ``(device_id, quantity, channel)`` in seq order as a chunk, its bounds and sums made."""
    device_id, quantity, channel = sensor
    return Chunk(
        hub_id,
        seqs[0],
        seqs[-1],
        household_id,
        device_id,
        quantity,
        channel,
        min(ts),
        max(ts),
        len(seqs),
        seqs,
        ts,
        vals,
        min(vals),
        max(vals),
        math.fsum(vals),
        received_at,
    )


def by_sensor(items: Iterable[ReadingItem]) -> dict[tuple[str, str, str], list[ReadingItem]]:
    """The items per sensor ``(device_id, quantity, channel)``, each sensor's in the items' order."""
    groups: dict[tuple[str, str, str], list[ReadingItem]] = {}
    for it in items:
        b = it.body
        key = (b.device_id, b.quantity, b.channel)
        group = groups.get(key)
        if group is None:
            groups[key] = [it]
        else:
            group.append(it)
    return groups


def _cuts(ts: Sequence[float], seqs: Sequence[int]) -> Iterable[tuple[int, int]]:
    """Where one sensor's readings in seq order (their times ``ts`` and ``seqs``) are cut into chunks, as ``[a, b)``
    index bounds: at :data:`CHUNK_MAX` readings, and where the next would stretch the chunk past :data:`MAX_SPAN_S`
    or :data:`MAX_SEQ_SPAN`."""
    lo = hi = ts[0]
    start = 0
    for i in range(1, len(ts)):
        t = ts[i]
        lo2, hi2 = min(lo, t), max(hi, t)
        if hi2 - lo2 > MAX_SPAN_S or i - start >= CHUNK_MAX or seqs[i] - seqs[start] > MAX_SEQ_SPAN:
            yield start, i
            start, lo, hi = i, t, t
        else:
            lo, hi = lo2, hi2
    yield start, len(ts)


def _run(conn: Connection, sql: str, *args: object) -> Any:
    """One statement through the driver (no SQLAlchemy compile on the ingest path); its first row."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, args)
        return cursor.fetchone()
    finally:
        cursor.close()


LOCK_SEED = 7
"""The hub's readings lock is the advisory lock ``hashtextextended(hub_id, LOCK_SEED)`` (ingest takes it in its
admission statement)."""


def packs(items: Sequence[ReadingItem]) -> bool:
    """Whether :func:`split` could make a chunk of ``items`` (a sensor with :data:`CHUNK_MIN` readings or more)."""
    if len(items) < CHUNK_MIN:
        return False
    counts = Counter((it.body.device_id, it.body.quantity, it.body.channel) for it in items)
    return max(counts.values()) >= CHUNK_MIN


def lock_hub(conn: Connection, hub_id: str, *, exclusive: bool) -> None:
    """The hub's readings lock, until the transaction ends (module docstring: exclusive to write chunks)."""
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    _run(conn, f"SELECT {fn}(hashtextextended(%s, {LOCK_SEED}))", hub_id)


def mark(conn: Connection, hub_id: str) -> int:
    """The highest seq the hub has stored in a chunk (-1: none). Read after :func:`lock_hub`, in a statement of its
    own: a statement sees what committed before it began, so a chunk batch the lock waited for is seen."""
    row = _run(conn, "SELECT chunked_to FROM hub_chunk_marks WHERE hub_id = %s", hub_id)
    return -1 if row is None else int(row[0])


def raise_mark(conn: Connection, hub_id: str, seq: int) -> None:
    conn.execute(
        text(
            "INSERT INTO hub_chunk_marks (hub_id, chunked_to) VALUES (:h, :s)"
            " ON CONFLICT (hub_id) DO UPDATE SET chunked_to = greatest(hub_chunk_marks.chunked_to, EXCLUDED.chunked_to)"
        ),
        {"h": hub_id, "s": seq},
    )


# A chunk holding a seq of the run [lo, hi] ends at or after lo and, its seqs spanning at most MAX_SEQ_SPAN, at most
# that far after hi: one bounded range of the index (hub_id, seq_last) per run. One run (an honest batch) is asked
# with constants, which PostgreSQL plans once and well; several through a lateral join over the runs.
_HELD_CHUNKS_RUN = text(
    "SELECT u.seq, u.ts FROM reading_chunks c, unnest(c.seqs, c.ts) AS u(seq, ts) WHERE c.hub_id = :h"
    " AND c.seq_last BETWEEN :lo AND :hi + :span AND c.seq_first <= :hi AND u.seq BETWEEN :lo AND :hi"
)
_HELD_ROWS_RUN = text("SELECT seq, ts FROM readings WHERE hub_id = :h AND seq BETWEEN :lo AND :hi")
_HELD_CHUNKS = text(
    "SELECT u.seq, u.ts FROM unnest(CAST(:los AS bigint[]), CAST(:his AS bigint[])) AS r(lo, hi)"
    " JOIN LATERAL (SELECT c.seqs, c.ts FROM reading_chunks c WHERE c.hub_id = :h"
    " AND c.seq_last BETWEEN r.lo AND r.hi + :span AND c.seq_first <= r.hi) AS c ON true,"
    " unnest(c.seqs, c.ts) AS u(seq, ts) WHERE u.seq BETWEEN r.lo AND r.hi"
)
_HELD_ROWS = text(
    "SELECT x.seq, x.ts FROM unnest(CAST(:los AS bigint[]), CAST(:his AS bigint[])) AS r(lo, hi)"
    " JOIN LATERAL (SELECT seq, ts FROM readings WHERE hub_id = :h AND seq BETWEEN r.lo AND r.hi) AS x ON true"
)


def runs(seqs: Sequence[int]) -> tuple[list[int], list[int]]:
    """The seqs as ranges ``[lo, hi]`` (two lists) split where two seqs are more than :data:`RUN_GAP` apart: one
    range when the seqs lie that close on the whole (an honest batch), so no Python step per seq then."""
    lo, hi = min(seqs), max(seqs)
    if hi - lo <= RUN_GAP * len(seqs):
        return [lo], [hi]
    ordered = sorted(seqs)
    los, his = [ordered[0]], []
    for prev, seq in itertools.pairwise(ordered):
        if seq - prev > RUN_GAP:
            his.append(prev)
            los.append(seq)
    his.append(ordered[-1])
    return los, his


def held(conn: Connection, hub_id: str, seqs: Sequence[int], *, rows: bool = True) -> set[tuple[int, float]]:
    """``(seq, ts)`` the register holds of the hub's readings with a seq among ``seqs`` or near them: in chunks, and
    (``rows``) in ``readings``. It reads only the seq ranges of :func:`runs`, so at most about :data:`RUN_GAP` seqs
    per seq of the batch, wherever they lie, and chunks that can hold those (:data:`MAX_SEQ_SPAN`)."""
    los, his = runs(seqs)
    if len(los) == 1:
        args: dict[str, Any] = {"h": hub_id, "lo": los[0], "hi": his[0], "span": MAX_SEQ_SPAN}
        queries = (_HELD_CHUNKS_RUN, _HELD_ROWS_RUN)
    else:
        args = {"h": hub_id, "los": los, "his": his, "span": MAX_SEQ_SPAN}
        queries = (_HELD_CHUNKS, _HELD_ROWS)
    out = {(int(s), float(t)) for s, t in conn.execute(queries[0], args)}
    if rows:
        out |= {(int(s), float(t)) for s, t in conn.execute(queries[1], args)}
    return out


def binary_array(oid: int, code: str, values: Sequence[float]) -> bytes:
    """``values`` as a one-dimensional PostgreSQL array of 8-byte elements (``int8``: ``code`` "q", ``float8``: "d")
    in the binary format ``COPY`` reads: a 20-byte header, then each element as its length (8) and its bytes.

    Built with a few slice assignments, not a Python step per element: psycopg's own list dumper is Python and cost
    the chunk path more register CPU than PostgreSQL saved on small chunks (docs/scale.md)."""
    n = len(values)
    if not n:
        return struct.pack(">iii", 0, 0, oid)  # as array_send gives an empty array: no dimension at all
    packed = struct.pack(f">{n}{code}", *values)
    out = bytearray(20 + 12 * n)
    struct.pack_into(">iiiii", out, 0, 1, 0, oid, n, 1)
    out[23::12] = b"\x08" * n  # each element's length, big-endian: three zero bytes, then 8
    for k in range(8):
        out[24 + k :: 12] = packed[k::8]
    return bytes(out)


def copy_chunks(conn: Connection, chunks: Iterable[Chunk]) -> int:
    """Writes chunks by binary ``COPY``; returns how many readings they hold."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    n = 0
    try:
        with cursor.copy(_COPY_SQL) as copy:
            copy.set_types(_WIRE_TYPES)
            for c in chunks:
                seqs = binary_array(_INT8_OID, "q", c.seqs)
                ts, vals = binary_array(_FLOAT8_OID, "d", c.ts), binary_array(_FLOAT8_OID, "d", c.vals)
                copy.write_row((*c[:10], seqs, ts, vals, *c[13:]))
                n += c.n
    finally:
        cursor.close()
    return n


# --------------------------------------------------------------------------------------------------- reading


def unnested(*where: ColumnElement[bool], keyed: bool = False) -> Any:
    """The readings the chunks hold, one row each, with the columns of ``readings`` (``where``: on the chunks'
    own columns, e.g. ``reading_chunks.c.household_id == h``, applied before the arrays are unnested). ``keyed``:
    with the chunk's own key beside, ``k_seq`` and ``k_ts`` (its ``seq_first`` and ``ts_first``)."""
    c = reading_chunks.c
    u = func.unnest(c.seqs, c.ts, c.vals).table_valued("seq", "ts", "value").render_derived(name="u")
    key = [c.seq_first.label("k_seq"), c.ts_first.label("k_ts")] if keyed else []
    columns = (c.hub_id, u.c.seq, c.household_id, c.device_id, c.quantity, u.c.value, u.c.ts, c.received_at, c.channel)
    return select(*columns, *key).select_from(reading_chunks.join(u, true())).where(*where)


def source(
    conn: Connection,
    *,
    household_id: str | None = None,
    hub_id: str | None = None,
    seq_after: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> FromClause:
    """Every reading, wherever it is stored: ``readings`` itself where there are no chunks (SQLite, a database before
    0012), else ``readings`` and the chunks unnested, as one selectable with the columns of ``readings``.

    The keywords narrow the chunks read (a reader filters the result on the same columns itself): the household, the
    hub, seqs above ``seq_after``, reading times in ``[since, until)``; each becomes a condition on the chunks'
    indexed columns, so a chart or a page of the export unnests only the chunks that can hold its readings."""
    if not available(conn):
        return db.readings
    c = reading_chunks.c
    where: list[ColumnElement[bool]] = []
    if household_id is not None:
        where.append(c.household_id == household_id)
    if hub_id is not None:
        where.append(c.hub_id == hub_id)
    if seq_after is not None:
        where.append(c.seq_last > seq_after)
    if since is not None:
        where.append(c.ts_last >= since)
        where.append(c.ts_first >= since - MAX_SPAN_S)
    if until is not None:
        where.append(c.ts_first < until)
    r = db.readings.c
    rows = select(*(r[name] for name in partitions.COLUMNS))
    return union_all(rows, unnested(*where)).subquery("readings_all")


# --------------------------------------------------------------------------------------------------- erasing


def _retarget(where: ColumnElement[bool], onto: Any) -> ColumnElement[bool]:
    """``where``, a condition on the columns of ``readings``, on the same-named columns of ``onto``."""

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, Column) and element.table is db.readings:
            return onto.c[element.name]
        return None

    return visitors.replacement_traverse(where, {}, swap)


def erase(
    engine: Engine,
    where: ColumnElement[bool],
    *,
    hint: ColumnElement[bool] | None = None,
    batch: int = 500,
    touched: set[str] | None = None,
) -> int:
    """Erases the chunked readings for which ``where`` (a condition on the columns of ``readings``) holds; returns
    how many. ``hint``: a condition on the chunks' own columns that every chunk holding such a reading meets (e.g.
    ``ts_first < cutoff`` for ``ts < cutoff``), so that only those chunks are unnested.

    A chunk all of whose readings go is deleted; one that keeps some is deleted and written again without the others,
    in the same transaction, ``batch`` chunks at a time. Adds to ``touched`` the partitions it deleted from, for the
    scrub (the old chunk's bytes stay in the partition's pages until it is rewritten)."""
    c = reading_chunks.c
    flat = unnested(*([hint] if hint is not None else []), keyed=True).subquery("flat")
    cond = _retarget(where, flat)
    parts_of_key = (flat.c.hub_id, flat.c.k_seq, flat.c.k_ts)
    key = tuple_(*parts_of_key)
    total = 0
    while True:
        with engine.begin() as conn:
            keys = [tuple(k) for k in conn.execute(select(*parts_of_key).where(cond).distinct().limit(batch))]
            if not keys:
                return total
            doomed = {
                tuple(r) for r in conn.execute(select(*parts_of_key, flat.c.seq, flat.c.ts).where(cond, key.in_(keys)))
            }
            which = tuple_(c.hub_id, c.seq_first, c.ts_first).in_(keys)
            old = conn.execute(select(reading_chunks).where(which)).all()
            parts = conn.execute(delete(reading_chunks).where(which).returning(partitions.PARTITION_OF)).scalars().all()
            if touched is not None:
                touched.update(parts)
            kept = []
            for row in old:
                rest = [
                    (s, t, v)
                    for s, t, v in zip(row.seqs, row.ts, row.vals, strict=True)
                    if (row.hub_id, row.seq_first, row.ts_first, s, t) not in doomed
                ]
                total += row.n - len(rest)
                if rest:
                    kept.append(_rebuilt(row, rest))
            if kept:
                copy_chunks(conn, kept)


def _rebuilt(row: Any, rest: list[tuple[int, float, float]]) -> Chunk:
    seqs, ts, vals = (list(col) for col in zip(*rest, strict=True))
    sensor = (row.device_id, row.quantity, row.channel)
    return pack(row.hub_id, row.household_id, sensor, seqs, ts, vals, row.received_at)
