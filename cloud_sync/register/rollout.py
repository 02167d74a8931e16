"""Staged rollout of releases: which hub should run which release, and the automatic pause.

* A rollout names a release and a percentage. A hub is in it when its cohort — a stable hash of its hub id, 0–99 —
  is below the percentage, so raising 5 → 25 → 100 only adds hubs and the same hubs always go first.
* A technician's override per hub wins over any rollout: ``pin`` (run exactly this release) or ``hold`` (stay).
* Hubs report each outcome (``POST /v1/releases/outcome``). When a rollout has at least ``min_reports`` outcomes
  and the share of failures (rolled back, refused, install failed) is above ``max_failure_rate``, the register
  pauses it: hubs not yet updated are told to stay, and the operator sees why.

Every change is audited (``release.start``, ``release.pause``, ``release.pin``, ``release.hold``,
``release.auto_pause``; outcomes as ``release.outcome``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Integer,
    RowMapping,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)

from cloud_sync import releases as rel
from cloud_sync.register import db
from cloud_sync.register.db import metadata
from cloud_sync.register.errors import Invalid, NotFound
from cloud_sync.register.registry import Registry, write_audit

FAILURES: Final = ("rolled_back", "refused", "install_failed")

release_rollouts = Table(
    "release_rollouts",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("percent", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # active | paused
    Column("max_failure_rate", Double, nullable=False),
    Column("min_reports", Integer, nullable=False),
    Column("reason", String(512), nullable=False, default=""),
    Column("started_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

release_overrides = Table(
    "release_overrides",
    metadata,
    Column("hub_id", String(128), primary_key=True),
    Column("pin_version", String(64), nullable=True),
    Column("hold", Boolean, nullable=False, default=False),
    Column("set_by", String(256), nullable=False),
    Column("set_at", Double, nullable=False),
)

release_outcomes = Table(
    "release_outcomes",
    metadata,
    Column("hub_id", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("detail", String(512), nullable=False, default=""),
    Column("at", Double, nullable=False),
)

TABLES: Final = (release_rollouts, release_overrides, release_outcomes)


def cohort(hub_id: str) -> int:
    """0–99, the same for a hub forever (SHA-256 of its id): who goes first is not a choice made per release."""
    return int.from_bytes(hashlib.sha256(hub_id.encode()).digest()[:8], "big") % 100


def _check_version(version: str) -> str:
    try:
        rel.version_key(version)
    except ValueError:
        raise Invalid(f"not a release number: {version[:64]!r}", code="bad_version") from None
    return version


def start(
    registry: Registry,
    version: str,
    percent: int,
    *,
    actor: str,
    max_failure_rate: float = 0.2,
    min_reports: int = 5,
    now: float | None = None,
) -> dict[str, Any]:
    """Starts a rollout or changes its percentage (and resumes it if paused). The newest started rollout is the
    one hubs follow; older ones stop when a newer starts."""
    _check_version(version)
    if not 0 <= percent <= 100:
        raise Invalid("percent must be 0 to 100", code="bad_percent")
    if not 0 < max_failure_rate <= 1 or min_reports < 1:
        raise Invalid("max failure rate must be in (0, 1] and min reports at least 1", code="bad_threshold")
    now = time.time() if now is None else now
    row = {
        "version": version,
        "percent": percent,
        "state": "active",
        "max_failure_rate": max_failure_rate,
        "min_reports": min_reports,
        "reason": "",
        "updated_at": now,
    }
    with registry.engine.begin() as conn:
        exists = conn.execute(select(release_rollouts.c.version).where(release_rollouts.c.version == version)).first()
        if exists:
            conn.execute(update(release_rollouts).where(release_rollouts.c.version == version).values(**row))
        else:
            conn.execute(insert(release_rollouts).values(**row, started_at=now))
        write_audit(conn, actor, "release.start", None, version, percent=percent, max_failure_rate=max_failure_rate)
    return row


def pause(registry: Registry, version: str, *, actor: str, reason: str = "paused by the operator") -> None:
    with registry.engine.begin() as conn:
        done = conn.execute(
            update(release_rollouts)
            .where(release_rollouts.c.version == version)
            .values(state="paused", reason=reason[:512], updated_at=time.time())
        )
        if done.rowcount == 0:
            raise NotFound(f"no rollout of {version[:64]}", code="no_rollout")
        write_audit(conn, actor, "release.pause", None, version)


def set_override(registry: Registry, hub_id: str, *, actor: str, pin: str | None, hold: bool) -> None:
    """``pin`` a hub to a release, ``hold`` it where it is, or (neither) let it follow rollouts again."""
    if pin is not None:
        _check_version(pin)
    with registry.engine.begin() as conn:
        if not conn.execute(select(db.hubs.c.id).where(db.hubs.c.id == hub_id)).first():
            raise NotFound("no such hub", code="no_hub")
        conn.execute(delete(release_overrides).where(release_overrides.c.hub_id == hub_id))
        if pin is not None or hold:
            conn.execute(
                insert(release_overrides).values(
                    hub_id=hub_id, pin_version=pin, hold=hold, set_by=actor[:256], set_at=time.time()
                )
            )
        action = "release.hold" if hold else "release.pin" if pin else "release.follow"
        write_audit(conn, actor, action, None, hub_id, version=pin or "")


def assignment(registry: Registry, hub_id: str) -> rel.Assignment:
    with registry.engine.begin() as conn:
        o = conn.execute(select(release_overrides).where(release_overrides.c.hub_id == hub_id)).mappings().first()
        newest = _newest_rollout(conn)
    return _assign(hub_id, o, newest)


def _newest_rollout(conn: Connection) -> RowMapping | None:
    """The rollout hubs follow: the newest started."""
    q = select(release_rollouts).order_by(release_rollouts.c.started_at.desc()).limit(1)
    return conn.execute(q).mappings().first()


def _assign(hub_id: str, override: RowMapping | None, newest: RowMapping | None) -> rel.Assignment:
    """A hub's assignment from its override (``pin_version``, ``hold``; None or both empty: none) and the newest
    rollout: the one rule for a single hub (:func:`assignment`) and for the whole fleet (:func:`hubs`)."""
    if override is not None and override["hold"]:
        return rel.Assignment(version=None, reason="hold")
    if override is not None and override["pin_version"]:
        return rel.Assignment(version=override["pin_version"], reason="pin")
    if newest is None:
        return rel.Assignment(version=None, reason="none")
    if newest["state"] != "active":
        return rel.Assignment(version=None, reason="paused")
    if cohort(hub_id) < newest["percent"]:
        return rel.Assignment(version=newest["version"], reason="rollout")
    return rel.Assignment(version=None, reason="none")


def record_outcome(registry: Registry, hub_id: str, household_id: str, outcome: rel.Outcome) -> None:
    """Keeps the hub's outcome for the release and pauses the rollout if its failure rate crossed the threshold."""
    now = time.time()
    row = {"hub_id": hub_id, "version": outcome.version, "outcome": outcome.outcome, "detail": outcome.detail}
    with registry.engine.begin() as conn:
        conn.execute(db.upsert(registry.engine, release_outcomes, ["outcome", "detail", "at"]), {**row, "at": now})
        write_audit(conn, f"hub:{hub_id}", "release.outcome", household_id, outcome.version, outcome=outcome.outcome)
        r = (
            conn.execute(select(release_rollouts).where(release_rollouts.c.version == outcome.version))
            .mappings()
            .first()
        )
        if r is None or r["state"] != "active":
            return
        oc = release_outcomes.c
        total, failed = conn.execute(
            select(func.count(), func.count().filter(oc.outcome.in_(FAILURES))).where(oc.version == outcome.version)
        ).one()
        if total >= r["min_reports"] and failed / total > r["max_failure_rate"]:
            reason = f"{failed} of {total} hubs failed ({failed / total:.0%} > {r['max_failure_rate']:.0%})"
            conn.execute(
                update(release_rollouts)
                .where(release_rollouts.c.version == outcome.version)
                .values(state="paused", reason=reason, updated_at=now)
            )
            write_audit(conn, "register", "release.auto_pause", None, outcome.version, failed=failed, total=total)


def rollouts(registry: Registry) -> list[dict[str, Any]]:
    """Every rollout, newest first, with its outcome counts."""
    oc = release_outcomes.c
    with registry.engine.begin() as conn:
        counts: dict[str, dict[str, int]] = {}
        for version, outcome, n in conn.execute(
            select(oc.version, oc.outcome, func.count()).group_by(oc.version, oc.outcome)
        ):
            counts.setdefault(version, {})[outcome] = n
        rows = conn.execute(select(release_rollouts).order_by(release_rollouts.c.started_at.desc())).mappings().all()
    return [{**dict(r), "outcomes": counts.get(r["version"], {})} for r in rows]


def hubs(registry: Registry, *, actor: str) -> list[dict[str, Any]]:
    """Where each hub stands: the release it last said it runs, what it is assigned, its last outcome; audited.
    Four statements whatever the fleet's size (the outcomes, the hubs with their overrides, the newest rollout, the
    audit entry), in one transaction, so every hub is judged against the same rollout."""
    h, hh, ov, oc = db.hubs, db.hub_health, release_overrides, release_outcomes
    out = []
    with registry.engine.begin() as conn:
        last: dict[str, dict[str, Any]] = {}
        for r in conn.execute(select(oc).order_by(oc.c.at)).mappings():
            last[r["hub_id"]] = dict(r)
        q = (
            select(h.c.id, hh.c.version, ov.c.pin_version, ov.c.hold)
            .select_from(h.outerjoin(hh, hh.c.hub_id == h.c.id).outerjoin(ov, ov.c.hub_id == h.c.id))
            .where(h.c.revoked.is_(False))
            .order_by(h.c.id)
        )
        rows = conn.execute(q).mappings().all()
        newest = _newest_rollout(conn)
        write_audit(conn, actor, "release.read", None, hubs=len(rows))
    for r in rows:
        a = _assign(r["id"], r, newest)
        o = last.get(r["id"])
        out.append(
            {
                "hub_id": r["id"],
                "cohort": cohort(r["id"]),
                "running": r["version"],
                "assigned": a.version,
                "why": a.reason,
                "last_outcome": f"{o['outcome']} {o['version']}" if o else None,
            }
        )
    return out
