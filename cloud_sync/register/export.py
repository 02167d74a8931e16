"""'Näytä tietoni' at the register: everything held about a household as a stream of JSON records.

A stream (one record per line, keyset-paginated) rather than one document, because six months of readings of a
busy household do not fit in memory. Clip bytes are not inlined: the export lists them, and the household fetches
the ciphertext (which only its members can open) separately.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import Any

import msgspec
from sqlalchemy import Table, select, tuple_

from cloud_sync.register import chunks, db
from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.registry import Registry
from cloud_sync.register.restriction_table import restrictions

_PAGE = 5000
_CHUNK_PAGE = 100
"""Chunks read a page (``reading_chunks``): about 8,000 readings at a catch-up's 83 a chunk, at most 100,000."""
_HIDDEN = {"household_id", "token_hash"}

_SMALL: list[tuple[str, Table]] = [
    ("household", db.households),
    ("member", db.members),
    ("member_key", db.member_keys),
    ("member_list_version", db.member_log),
    ("member_request", db.member_requests),
    ("consent", db.consents),
    ("restriction", restrictions),
    ("hub", db.hubs),
    ("hub_health", db.hub_health),
    ("device", db.devices),
    ("clip", db.clips),
    ("command", db.commands),
    ("contact", notify_schema.contacts),
    ("escalation_policy", notify_schema.escalation_policies),
    ("alarm", notify_schema.alarms),
    ("notification", notify_schema.notify_jobs),
]
_LARGE: list[tuple[str, Table]] = [
    ("reading", db.readings),
    ("event", db.events),
    ("clip_record", db.clip_records),
    ("diagnostics", db.diagnostics),
]


def _clean(kind: str, row: Any) -> dict[str, Any]:
    return {"type": kind, **{k: v for k, v in row.items() if k not in _HIDDEN}}


def export_household(registry: Registry, household_id: str, *, actor: str) -> Iterator[dict[str, Any]]:
    """Every record of the household, lazily. Checks the household and audits the export at once (before the
    first record), so an error can still become a proper HTTP status."""
    with registry.engine.connect() as conn:
        registry.require_household(conn, household_id)
    registry.audit(actor, "household.export", household_id)
    return _records(registry, household_id)


def _records(registry: Registry, household_id: str) -> Iterator[dict[str, Any]]:
    with registry.engine.connect() as conn:
        for kind, table in _SMALL:
            col = table.c.id if table is db.households else table.c.household_id
            for row in conn.execute(select(table).where(col == household_id)).mappings():
                yield _clean(kind, row)
    with registry.engine.connect() as conn:
        hubs = conn.execute(select(db.hubs.c.id).where(db.hubs.c.household_id == household_id)).scalars().all()
        chunked = chunks.available(conn)
    for kind, table in _LARGE:
        for hub_id in sorted(hubs):
            found = _pages(registry, table, hub_id)
            if table is db.readings and chunked:
                # Readings also stored in chunks (PostgreSQL, chunks.py), merged in: the same records as rows.
                found = heapq.merge(found, _chunk_readings(registry, hub_id), key=lambda r: (r["seq"], r["ts"]))
            for row in found:
                if row["household_id"] == household_id:
                    yield _clean(kind, row)
    for entry in registry.audit_entries(household_id, limit=100_000):
        yield _clean("audit", entry)


def _pages(registry: Registry, table: Table, hub_id: str) -> Iterator[Any]:
    """The hub's rows of ``table`` (of every household: the caller checks), in its primary key's order."""
    # Hub by hub (a hub never changes household, and its row is never deleted), each in its primary key's order
    # (hub_id first): every page is a range of that key, not a filter over the household's rows. The household
    # is checked on the rows, not in SQL, where PostgreSQL would combine the household's index with the key's
    # and sort the hub's every row for each page (bench/readings_plans.py).
    keys = list(table.primary_key.columns)[1:]
    after: tuple[Any, ...] | None = None
    while True:
        q = select(table).where(table.c.hub_id == hub_id).order_by(*keys).limit(_PAGE)
        if after is not None:
            q = q.where(tuple_(*keys) > tuple_(*after))
        # A short connection per page: a slow reader of the export never holds a transaction open for long.
        with registry.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        yield from rows
        if len(rows) < _PAGE:
            return
        after = tuple(rows[-1][k.name] for k in keys)


def _chunk_readings(registry: Registry, hub_id: str) -> Iterator[dict[str, Any]]:
    """The readings of the hub's chunks (of every household: the caller checks) in ``(seq, ts)`` order, as dicts
    with the columns of ``readings`` in their order.

    The chunks are read in pages of the primary key ``(hub_id, seq_first, ts_first)``, each chunk once (no page of
    the union of both tables with ``ORDER BY seq LIMIT``, which would unnest every later chunk of the hub for each
    page). The chunks of one batch overlap in seq (one per sensor), so a chunk's readings wait in a heap until no
    chunk still to be read can hold a smaller seq: one that begins below the last ``seq_first`` read."""
    c = chunks.reading_chunks.c
    cols = (c.hub_id, c.household_id, c.device_id, c.quantity, c.channel, c.received_at, c.seqs, c.ts, c.vals)
    waiting: list[tuple[int, float, int, dict[str, Any]]] = []
    order = itertools.count()
    after: tuple[int, float] | None = None
    while True:
        q = (
            select(c.seq_first, c.ts_first, *cols)
            .where(c.hub_id == hub_id)
            .order_by(c.seq_first, c.ts_first)
            .limit(_CHUNK_PAGE)
        )
        if after is not None:
            q = q.where(tuple_(c.seq_first, c.ts_first) > tuple_(*after))
        with registry.engine.connect() as conn:
            got = conn.execute(q).all()
        for ch in got:
            for seq, ts, value in zip(ch.seqs, ch.ts, ch.vals, strict=True):
                record = {
                    "hub_id": ch.hub_id,
                    "seq": seq,
                    "household_id": ch.household_id,
                    "device_id": ch.device_id,
                    "quantity": ch.quantity,
                    "value": value,
                    "ts": ts,
                    "received_at": ch.received_at,
                    "channel": ch.channel,
                }
                heapq.heappush(waiting, (seq, ts, next(order), record))
        if len(got) < _CHUNK_PAGE:
            while waiting:
                yield heapq.heappop(waiting)[3]
            return
        after = (got[-1].seq_first, got[-1].ts_first)
        while waiting and waiting[0][0] < after[0]:
            yield heapq.heappop(waiting)[3]


def ndjson(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    encoder = msgspec.json.Encoder()
    for record in records:
        yield encoder.encode(record) + b"\n"
