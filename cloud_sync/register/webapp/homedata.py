"""What Home shows, read in one short transaction: the household's hubs, its devices by room with their latest
value per quantity (one index seek each), and the open alarms."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Double, Select, String, func, literal, select, true, union_all

from cloud_sync.register import chunks, db
from cloud_sync.register.fleet import ONLINE_WINDOW_S
from cloud_sync.register.notify import schema as notify

QUANTITIES: Final[dict[str, str]] = {
    "temperature": "°C",
    "humidity": "%",
    "co2": "ppm",
    "pm25": "µg/m³",
    "illuminance": "lx",
    "pressure": "hPa",
    "smoke_density": "%/m",
    "voltage": "V",
    "battery": "%",
}
"""The quantities Home shows, in this order, with their units (as the hub sends them; see gateway.model.UNITS)."""
MAX_UNNAMED: Final = 50
"""At most this many devices not (yet) in the hub's device list are shown."""
UNNAMED_WINDOW_S: Final = 600.0
UNNAMED_SCAN: Final = 5000
"""Devices not in the device list are looked for in the readings of the last 10 minutes, at most this many: the
hub sends its list every minute, so a device is unnamed only briefly."""
DEVICE_SILENT_S: Final = 3 * 3600.0
"""A device without availability reports counts as offline when nothing was heard from it for this long."""


@dataclass
class Device:
    device_id: str
    name: str
    kind: str
    room: str
    values: list[tuple[str, float, str, float]] = field(default_factory=list)
    """``(quantity, value, unit, ts)`` in :data:`QUANTITIES` order."""
    availability: str | None = None
    last_heard: float | None = None

    @property
    def battery(self) -> float | None:
        return next((v for q, v, _, _ in self.values if q == "battery"), None)

    def status(self, now: float) -> str:
        """``online``, ``offline`` or ``unknown`` (never heard from)."""
        if self.availability in ("online", "offline"):
            return self.availability
        if self.last_heard is None:
            return "unknown"
        return "online" if now - self.last_heard <= DEVICE_SILENT_S else "offline"


@dataclass
class Home:
    hubs: list[dict[str, Any]]
    rooms: list[tuple[str, list[Device]]]
    alarms: list[dict[str, Any]]


def read(conn: Connection, household_id: str, now: float) -> Home:
    h = db.hubs.c
    hubs = [
        {**r, "online": r["last_seen"] is not None and now - r["last_seen"] <= ONLINE_WINDOW_S}
        for r in conn.execute(
            select(h.id, h.name, h.last_seen)
            .where(h.household_id == household_id, h.revoked.is_(False))
            .order_by(h.enrolled_at)
        ).mappings()
    ]
    d = db.devices.c
    devices = {
        r.device_id: Device(r.device_id, r.name or r.device_id, r.kind, r.room)
        for r in conn.execute(
            select(d.device_id, d.name, d.kind, d.room).where(d.household_id == household_id).order_by(d.name)
        )
    }
    known = select(d.device_id.label("device_id")).where(d.household_id == household_id)
    if devices:
        _latest_values(conn, household_id, devices, known)
        _availability(conn, household_id, devices)
    # A device the hub reports readings of before it has sent its device list (every minute) shows at once,
    # under its id and without a room, rather than a minute later.
    r = db.readings.c
    # The newest readings of each of the household's hubs: its last UNNAMED_SCAN seqs, a range of the primary key
    # (hub, seq), of which those of the window (a hub's seq follows its time; the ts bound leaves only this week's
    # partition). There is no (household, time) index to ingest into, and a DISTINCT would scan the household's
    # readings through the sensor index. (A hub is in one household for good: the rows need no household filter,
    # which would make PostgreSQL combine indexes over the hub's whole week instead of reading a range.)
    since = now - UNNAMED_WINDOW_S
    chunked = chunks.available(conn)
    recent: list[str] = []
    for hub_id in conn.execute(select(h.id).where(h.household_id == household_id)).scalars().all():
        top = select(func.max(r.seq)).where(r.hub_id == hub_id, r.ts >= since).scalar_subquery()
        in_chunks = _recent_in_chunks(conn, hub_id, since) if chunked else []
        if not in_chunks:
            recent += conn.execute(
                select(r.device_id)
                .where(r.hub_id == hub_id, r.seq > top - UNNAMED_SCAN, r.ts >= since)
                .order_by(r.seq.desc())
            ).scalars()
            continue
        # Some of the window's readings are in chunks: the last UNNAMED_SCAN seqs of both, as if all were rows.
        chunk_top = max(seq for seq, _ in in_chunks)
        found = [
            (seq, dev_id)
            for seq, dev_id in conn.execute(
                select(r.seq, r.device_id)
                .where(r.hub_id == hub_id, r.seq > func.greatest(top, chunk_top) - UNNAMED_SCAN, r.ts >= since)
                .order_by(r.seq.desc())
            )
        ]
        newest = max(chunk_top, found[0][0] if found else chunk_top)
        found += [(seq, dev_id) for seq, dev_id in in_chunks if seq > newest - UNNAMED_SCAN]
        found.sort(key=lambda x: x[0], reverse=True)
        recent += [dev_id for _, dev_id in found]
    unnamed = list(dict.fromkeys(dev_id for dev_id in recent if dev_id not in devices))[:MAX_UNNAMED]
    if unnamed:
        new = {dev_id: Device(dev_id, dev_id, "", "") for dev_id in sorted(unnamed)}
        ids = union_all(*(select(literal(x, String).label("device_id")) for x in new)).subquery("u")
        _latest_values(conn, household_id, new, select(ids.c.device_id))
        devices.update(new)
    rooms: dict[str, list[Device]] = defaultdict(list)
    for dev in devices.values():
        rooms[dev.room].append(dev)
    a = notify.alarms.c
    alarms = [
        dict(r)
        for r in conn.execute(
            select(a.id, a.category, a.place, a.raised_at, a.late, a.urgent)
            .where(a.household_id == household_id, a.acked_at.is_(None), a.cleared_at.is_(None))
            .order_by(a.raised_at.desc())
            .limit(50)
        ).mappings()
    ]
    # Named rooms alphabetically, devices without a room last.
    ordered = sorted(rooms.items(), key=lambda kv: (kv[0] == "", kv[0].casefold()))
    return Home(hubs=hubs, rooms=ordered, alarms=alarms)


def _recent_in_chunks(conn: Connection, hub_id: str, since: float) -> list[tuple[int, str]]:
    """``(seq, device_id)`` of the hub's readings from ``since`` on that are stored in chunks (:mod:`.chunks`): of
    its chunks among its last :data:`UNNAMED_SCAN` seqs (as for the rows: a hub's seq follows its time), a range of
    the index ``(hub_id, seq_last)`` in the weeks where a chunk reaching ``since`` can begin.

    Not "below the newest seq of the window", as for the rows: the chunks cannot find that by an index (their
    partitions are by ``ts_first``, and a chunk's times are not in the index), and a scan for it would read the whole
    week before on a week's first day."""
    c = chunks.reading_chunks.c
    newest = select(func.max(c.seq_last)).where(c.hub_id == hub_id).scalar_subquery().correlate(None)
    q = chunks.unnested(
        c.hub_id == hub_id,
        c.seq_last > newest - UNNAMED_SCAN,
        c.ts_last >= since,
        c.ts_first >= since - chunks.MAX_SPAN_S,
    )
    held = q.selected_columns
    return [
        (int(seq), str(dev_id))
        for seq, dev_id in conn.execute(q.with_only_columns(held.seq, held.device_id).where(held.ts >= since))
    ]


def _latest_values(conn: Connection, household_id: str, devices: dict[str, Device], ids: Select[Any]) -> None:
    """Fills ``devices`` (those of ``ids``, a one-column select of device ids) with their newest values."""
    r = db.readings.c
    dev = ids.subquery("d")
    # The quantities as a tiny table (UNION ALL of literals: SQLite has no column names for VALUES).
    q = union_all(*(select(literal(x, String).label("quantity")) for x in QUANTITIES)).subquery("q")
    # First the newest time per device and quantity (one seek each in the covering index), then the value only
    # where there is one (most devices report two or three of the quantities).
    newest: Any = (
        select(r.ts)
        .where(r.household_id == household_id, r.device_id == dev.c.device_id, r.quantity == q.c.quantity)
        .order_by(r.ts.desc())
        .limit(1)
        .scalar_subquery()
    )
    chunked = chunks.available(conn)
    if chunked:
        # Readings in chunks too (PostgreSQL, chunks.py): a chunk's newest time is its ts_last. The chunk that
        # begins last (one seek in (household_id, device_id, quantity, ts_first)) ends at most MAX_SPAN_S before
        # the newest, so only the chunks beginning from MAX_SPAN_S before it are looked at for the greatest ts_last.
        c = chunks.reading_chunks.c
        sensor = (c.household_id == household_id, c.device_id == dev.c.device_id, c.quantity == q.c.quantity)
        b = chunks.reading_chunks.alias("b")
        began = (
            select(func.max(b.c.ts_first))
            .where(b.c.household_id == household_id, b.c.device_id == dev.c.device_id, b.c.quantity == q.c.quantity)
            .correlate(dev, q)  # two levels up: not found by auto-correlation
            .scalar_subquery()
        )
        ended = select(func.max(c.ts_last)).where(*sensor, c.ts_first >= began - chunks.MAX_SPAN_S).scalar_subquery()
        newest = func.greatest(newest, ended, type_=Double)  # NULLs ignored: None only without either
    paired = select(dev.c.device_id.label("device_id"), q.c.quantity.label("quantity"), newest.label("ts")).select_from(
        dev.join(q, true())
    )
    if chunked:
        # OFFSET 0 keeps PostgreSQL from pulling the subquery up into the query below, which would evaluate the
        # newest time (now also the chunks' probes) once for each of its three uses instead of once.
        paired = paired.offset(0)
    pairs = paired.subquery("p")
    p = pairs.c
    value: Any = (
        select(r.value)
        .where(r.household_id == household_id, r.device_id == p.device_id, r.quantity == p.quantity, r.ts == p.ts)
        .limit(1)
        .scalar_subquery()
    )
    if chunked:
        # Not a row: the value at that time in a chunk reaching it (read only where no row has it).
        c = chunks.reading_chunks.c
        holding = chunks.unnested(
            c.household_id == household_id,
            c.device_id == p.device_id,
            c.quantity == p.quantity,
            c.ts_first >= p.ts - chunks.MAX_SPAN_S,
            c.ts_first <= p.ts,
            c.ts_last >= p.ts,
        )
        held = holding.selected_columns
        in_chunk = holding.with_only_columns(held.value).where(held.ts == p.ts).limit(1).scalar_subquery()
        value = func.coalesce(value, in_chunk)
    order = {name: i for i, name in enumerate(QUANTITIES)}
    for row in conn.execute(select(p.device_id, p.quantity, p.ts, value.label("value")).where(p.ts.isnot(None))):
        device = devices[row.device_id]
        device.values.append((row.quantity, float(row.value), QUANTITIES[row.quantity], float(row.ts)))
        device.last_heard = max(device.last_heard or 0.0, float(row.ts))
    for device in devices.values():
        device.values.sort(key=lambda v: order[v[0]])


def _availability(conn: Connection, household_id: str, devices: dict[str, Device]) -> None:
    e, d = db.events.c, db.devices.c
    state = (
        select(e.state)
        .where(e.household_id == household_id, e.device_id == d.device_id, e.kind == "availability")
        .order_by(e.ts.desc())
        .limit(1)
        .scalar_subquery()
    )
    for row in conn.execute(select(d.device_id, state.label("state")).where(d.household_id == household_id)):
        if row.state is not None:
            devices[row.device_id].availability = row.state
