"""Remote configuration: the operator pushes a new ``kotihub.toml`` to one hub or a cohort (docs/updates.md,
"Remote configuration").

A push is validated here with the very schema ``kotihub config check`` uses (``gateway.config``) before any hub can
fetch it, and again on the hub; the hub applies it atomically, restarts, and reverts it if the daemon is not healthy
(the updater's health rule). Pushes and outcomes are audited. A push never carries secrets (the schema refuses
secret keys in the file) and a configuration never touches the store's data.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import tomllib
from typing import Annotated, Any, Final, Literal

import msgspec
from sqlalchemy import Column, Double, String, Table, Text, insert, select, update

from cloud_sync.register import db
from cloud_sync.register.db import metadata
from cloud_sync.register.errors import Invalid, NotFound
from cloud_sync.register.registry import Registry, write_audit
from cloud_sync.register.rollout import cohort

MAX_CONFIG_BYTES: Final = 64 * 1024

config_pushes = Table(
    "config_pushes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("hub_id", String(128), nullable=False, index=True),
    Column("toml", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # pending | applied | reverted | refused | superseded
    Column("detail", String(512), nullable=False, default=""),
    Column("created_by", String(256), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)


class PendingConfig(msgspec.Struct, frozen=True):
    """``GET /v1/config/pending``: the oldest push not yet applied by this hub, or none."""

    push_id: str | None
    toml: str = ""
    sha256: str = ""


class ConfigOutcome(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    outcome: Literal["applied", "reverted", "refused"]
    detail: Annotated[str, msgspec.Meta(max_length=512, pattern="^[^\x00-\x1f\x7f]*\\Z")] = ""


def validate(text: str) -> None:
    """``kotihub config check``'s rules: every problem with its key, as a 422."""
    from gateway import config as hub_config  # the hub's schema, shared so both ends judge a file alike
    from gateway.errors import ConfigError

    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise Invalid(f"configuration larger than {MAX_CONFIG_BYTES} bytes", code="config_too_large")
    try:
        hub_config.parse(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"not valid TOML: {exc}", code="config_invalid") from exc
    except ConfigError as exc:
        raise Invalid(f"configuration refused: {exc}"[:1000], code="config_invalid") from exc


def push(
    registry: Registry, text: str, *, actor: str, hubs: list[str] | None = None, percent: int | None = None
) -> list[str]:
    """Queues ``text`` for the named hubs or the cohort below ``percent``; returns the push ids. A newer push to a
    hub supersedes its pending one (only the latest configuration matters)."""
    validate(text)
    if (hubs is None) == (percent is None):
        raise Invalid("name hubs or a cohort percentage, not both", code="bad_target")
    if percent is not None and not 0 < percent <= 100:
        raise Invalid("percent must be 1 to 100", code="bad_percent")
    digest = hashlib.sha256(text.encode()).hexdigest()
    now = time.time()
    ids: list[str] = []
    with registry.engine.begin() as conn:
        enrolled = [r[0] for r in conn.execute(select(db.hubs.c.id).where(db.hubs.c.revoked.is_(False)))]
        if hubs is not None:
            unknown = sorted(set(hubs) - set(enrolled))
            if unknown:
                raise NotFound(f"no such hub: {', '.join(unknown)[:200]}", code="no_hub")
            targets = hubs
        else:
            assert percent is not None
            targets = [h for h in enrolled if cohort(h) < percent]
        for hub_id in targets:
            conn.execute(
                update(config_pushes)
                .where(config_pushes.c.hub_id == hub_id, config_pushes.c.state == "pending")
                .values(state="superseded", updated_at=now)
            )
            push_id = "cfg_" + secrets.token_hex(12)
            conn.execute(
                insert(config_pushes).values(
                    id=push_id, hub_id=hub_id, toml=text, sha256=digest, state="pending", detail="",
                    created_by=actor[:256], created_at=now, updated_at=now,
                )
            )  # fmt: skip
            ids.append(push_id)
        write_audit(conn, actor, "config.push", None, digest[:16], hubs=len(targets), percent=percent)
    return ids


def pending(registry: Registry, hub_id: str) -> PendingConfig:
    c = config_pushes.c
    with registry.engine.begin() as conn:
        row = conn.execute(
            select(c.id, c.toml, c.sha256)
            .where(c.hub_id == hub_id, c.state == "pending")
            .order_by(c.created_at.desc())
            .limit(1)
        ).first()
    return PendingConfig(push_id=None) if row is None else PendingConfig(push_id=row[0], toml=row[1], sha256=row[2])


def record_outcome(registry: Registry, hub_id: str, household_id: str, push_id: str, o: ConfigOutcome) -> None:
    c = config_pushes.c
    with registry.engine.begin() as conn:
        done = conn.execute(
            update(config_pushes)
            .where(c.id == push_id, c.hub_id == hub_id, c.state == "pending")
            .values(state=o.outcome, detail=o.detail, updated_at=time.time())
        )
        if done.rowcount == 0:
            raise NotFound("no such pending configuration for this hub", code="no_config_push")
        write_audit(conn, f"hub:{hub_id}", "config.outcome", household_id, push_id, outcome=o.outcome)


def pushes(registry: Registry, *, actor: str) -> list[dict[str, Any]]:
    c = config_pushes.c
    with registry.engine.begin() as conn:
        rows = conn.execute(
            select(c.id, c.hub_id, c.sha256, c.state, c.detail, c.created_by, c.created_at, c.updated_at).order_by(
                c.created_at.desc()
            )
        ).mappings()
        out = [dict(r) for r in rows]
        write_audit(conn, actor, "config.read", None, pushes=len(out))
    return out
