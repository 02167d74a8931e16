"""'Näytä tietoni' at the register: everything held about a household as a stream of JSON records.

A stream (one record per line, keyset-paginated) rather than one document, because six months of readings of a
busy household do not fit in memory. Clip bytes are not inlined: the export lists them, and the household fetches
the ciphertext (which only its members can open) separately.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from sqlalchemy import Table, select, tuple_

from cloud_sync.register import db
from cloud_sync.register.notify import schema as notify_schema
from cloud_sync.register.registry import Registry
from cloud_sync.register.restriction_table import restrictions

_PAGE = 5000
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
    for kind, table in _LARGE:
        # Hub by hub (a hub never changes household, and its row is never deleted), each in its primary key's order
        # (hub_id first): every page is a range of that key, not a filter over the household's rows. The household
        # is checked on the rows, not in SQL, where PostgreSQL would combine the household's index with the key's
        # and sort the hub's every row for each page (bench/readings_plans.py).
        keys = list(table.primary_key.columns)[1:]
        for hub_id in sorted(hubs):
            after: tuple[Any, ...] | None = None
            while True:
                q = select(table).where(table.c.hub_id == hub_id).order_by(*keys).limit(_PAGE)
                if after is not None:
                    q = q.where(tuple_(*keys) > tuple_(*after))
                # A short connection per page: a slow reader of the export never holds a transaction open for long.
                with registry.engine.connect() as conn:
                    rows = conn.execute(q).mappings().all()
                for row in rows:
                    if row["household_id"] == household_id:
                        yield _clean(kind, row)
                if len(rows) < _PAGE:
                    break
                after = tuple(rows[-1][k.name] for k in keys)
    for entry in registry.audit_entries(household_id, limit=100_000):
        yield _clean("audit", entry)


def ndjson(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    encoder = msgspec.json.Encoder()
    for record in records:
        yield encoder.encode(record) + b"\n"
