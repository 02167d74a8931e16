"""Restriction of processing, as the register knows it: which categories the household asked to stop.

The hub carries a restriction out (it stops collecting and syncing the category; ``restrict`` command); the
register keeps the household's choice too, so that the app never shows a restricted category, whatever was held
before. A row means "restricted since ``since``"; lifting the restriction deletes it. The table lives as long as
the household's membership (erasure removes it with the rest; the hub keeps its own copy). The table is in
:mod:`cloud_sync.register.restriction_table`, which the registry imports so erasure covers it in every process.
"""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import and_, delete, select

from cloud_sync.protocol import ERASURE_CATEGORIES
from cloud_sync.register.errors import Invalid
from cloud_sync.register.registry import Registry, write_audit
from cloud_sync.register.restriction_table import restrictions

CATEGORIES: Final[tuple[str, ...]] = tuple(ERASURE_CATEGORIES)
"""sensors, alarms, camera, presence, diagnostics: the hub's categories (gateway.model.Category)."""


def restricted(registry: Registry, household_id: str) -> set[str]:
    with registry.engine.connect() as conn:
        rows = conn.execute(select(restrictions.c.category).where(restrictions.c.household_id == household_id))
        return {str(c) for (c,) in rows}


def set_restricted(registry: Registry, household_id: str, category: str, on: bool, *, actor: str) -> list[str]:
    """Record the household's choice (audited as ``actor``) and tell its hubs (a ``restrict`` command each).
    Returns the ids of the commands queued."""
    if category not in CATEGORIES:
        raise Invalid(f"category must be one of {', '.join(CATEGORIES)}", code="bad_category")
    with registry.engine.begin() as conn:
        registry.require_household(conn, household_id)
        where = and_(restrictions.c.household_id == household_id, restrictions.c.category == category)
        conn.execute(delete(restrictions).where(where))
        if on:
            conn.execute(
                restrictions.insert().values(
                    household_id=household_id, category=category, since=time.time(), actor=actor
                )
            )
        write_audit(conn, actor, "restriction.change", household_id, category, on=on)
    return registry.queue_command(
        household_id, "restrict", {"category": category, "on": on, "actor": actor}, actor=actor
    )
