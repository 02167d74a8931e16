"""The operator's alarm desk: open alarms, those unacknowledged past their policy, and history, by role.

Support sees the desk itself (alarms unacknowledged past the household's policy: someone must phone them) and no
more; an admin also sees every open alarm and a household's history. Every read writes an audit row per household
it showed, as every operator read does.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import select

from cloud_sync.register.errors import Forbidden
from cloud_sync.register.notify import alarms, schema
from cloud_sync.register.registry import Registry, write_audit

View = Literal["desk", "open", "history"]
_ALLOWED: dict[str, frozenset[str]] = {
    "desk": frozenset({"support", "admin"}),
    "open": frozenset({"admin"}),
    "history": frozenset({"admin"}),
}


def read(
    registry: Registry, view: View, *, role: str, actor: str, household_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if role not in _ALLOWED[view]:
        raise Forbidden(f"role {role!r} may not read the {view} view of the alarm desk", code="role_forbidden")
    a, j = schema.alarms, schema.notify_jobs
    with registry.engine.begin() as conn:
        if view == "history":
            if household_id is None:
                raise Forbidden("history needs a household", code="no_household")
            registry.require_household(conn, household_id)
            out = alarms.history(conn, household_id, limit=limit)
        else:
            q = select(a).where(a.c.acked_at.is_(None)).order_by(a.c.received_at).limit(limit)
            if view == "desk":
                on_desk = select(j.c.alarm_id).where(j.c.channel == "desk", j.c.state == "sent")
                q = q.where(a.c.id.in_(on_desk))
            if household_id is not None:
                q = q.where(a.c.household_id == household_id)
            out = [dict(r) for r in conn.execute(q).mappings()]
        for h in sorted({str(r["household_id"]) for r in out} | ({household_id} if household_id else set())):
            write_audit(conn, actor, f"alarms.{view}.read", h, rows=sum(1 for r in out if r["household_id"] == h))
    return out
