"""The register's side of "Näytä tietoni" and "Poista tietoni" for the household's app.

* :func:`held` counts what the register holds of a household, by what it is (what an erasure would destroy);
* :func:`ask_hub_export` queues the hub's ``export`` command and :func:`hub_exports` follows it;
* :func:`erase` carries out the erasure here (``retention.erase_household``), returning the register's signed
  receipt and the ``erase`` commands sent to the hubs; :func:`erasure_progress` follows those hubs, each hub's
  receipt verified against the register's CA (``cloud_sync.receipts``);
* :class:`ProgressTokens`: erasing removes the household's members, and with them the member's own sign-in, so
  the page that follows the hubs is reached by a signed, short-lived token naming that one erasure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select

from cloud_sync import receipts
from cloud_sync.register import chunks, db, retention
from cloud_sync.register.errors import Forbidden, NotFound
from cloud_sync.register.notify import schema as notify
from cloud_sync.register.notify.links import load_key
from cloud_sync.register.registry import Registry

HELD: Final[tuple[tuple[str, Any], ...]] = (
    # (what the page calls it, table): the tables whose rows a household recognises as its data.
    ("readings", db.readings),
    ("events", db.events),
    ("clips", db.clips),
    ("clip_records", db.clip_records),
    ("diagnostics", db.diagnostics),
    ("devices", db.devices),
    ("members", db.members),
    ("contacts", notify.contacts),
    ("alarms", notify.alarms),
    ("notifications", notify.notify_jobs),
    ("commands", db.commands),
)

CATEGORY_OF: Final[dict[str, str]] = {
    # Which restrictable category each count belongs to ("" = always shown).
    "readings": "sensors",
    "clips": "camera",
    "clip_records": "camera",
    "diagnostics": "diagnostics",
    "alarms": "alarms",
}


def held(registry: Registry, household_id: str) -> dict[str, int]:
    """Rows held per kind of data, one indexed count each; readings count those stored in chunks too (PostgreSQL,
    :mod:`.chunks`: the chunks' ``n``)."""
    out: dict[str, int] = {}
    with registry.engine.connect() as conn:
        registry.require_household(conn, household_id)
        for name, table in HELD:
            out[name] = int(
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.household_id == household_id)
                ).scalar_one()
            )
        if chunks.available(conn):
            c = chunks.reading_chunks.c
            out["readings"] += int(
                conn.execute(select(func.coalesce(func.sum(c.n), 0)).where(c.household_id == household_id)).scalar_one()
            )
        out["clip_bytes"] = int(
            conn.execute(
                select(func.coalesce(func.sum(db.clips.c.size), 0)).where(db.clips.c.household_id == household_id)
            ).scalar_one()
        )
    return out


# ------------------------------------------------------------------------------------------------- export


def ask_hub_export(registry: Registry, household_id: str, *, actor: str) -> list[str]:
    """Ask every hub of the household for its copy (an ``export`` command each)."""
    return registry.queue_command(household_id, "export", {"actor": actor}, actor=actor)


def hub_exports(registry: Registry, household_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The latest export commands and what each hub answered (``detail``: its error when it cannot export)."""
    c = db.commands.c
    with registry.engine.connect() as conn:
        rows = conn.execute(
            select(c.id, c.hub_id, c.status, c.issued_at, c.delivered_at, c.completed_at, c.detail)
            .where(c.household_id == household_id, c.kind == "export")
            .order_by(c.issued_at.desc())
            .limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


# ------------------------------------------------------------------------------------------------ erasure


@dataclass(frozen=True)
class Erasure:
    receipt: dict[str, Any]
    """The register's signed receipt."""
    signer: str
    """Who signed it, as :func:`cloud_sync.receipts.verify` found (``register``)."""
    hub_commands: list[str]
    counts: dict[str, Any]


def erase(registry: Registry, household_id: str, *, actor: str) -> Erasure:
    summary = retention.erase_household(registry, household_id, actor=actor)
    receipt: dict[str, Any] = summary["receipt"]  # type: ignore[assignment]
    signer = receipts.verify(receipt, registry.ca.cert_pem).signer
    counts = {k: v for k, v in summary.items() if k not in ("receipt", "scrub", "hub_commands")}
    return Erasure(receipt, signer, list(summary.get("hub_commands", [])), counts)  # type: ignore[call-overload]


def register_receipt(registry: Registry, household_id: str, receipt_id: str) -> dict[str, Any]:
    with registry.engine.connect() as conn:
        body = conn.execute(
            select(db.erasure_receipts.c.body).where(
                db.erasure_receipts.c.household_id == household_id, db.erasure_receipts.c.receipt_id == receipt_id
            )
        ).scalar()
    if body is None:
        raise NotFound("no such erasure receipt", code="no_receipt")
    return dict(body)


def erasure_progress(registry: Registry, household_id: str, receipt_id: str) -> dict[str, Any]:
    """The register's receipt and each hub's progress with this erasure: ``pending`` (not fetched yet),
    ``delivered``, ``done`` (its receipt verified: ``signer``) or ``failed``."""
    mine = register_receipt(registry, household_id, receipt_id)
    c = db.commands.c
    with registry.engine.connect() as conn:
        rows = conn.execute(
            select(c.id, c.hub_id, c.status, c.args, c.detail, c.delivered_at, c.completed_at).where(
                c.household_id == household_id, c.kind == "erase"
            )
        ).mappings()
        ours = [
            r
            for r in rows
            if isinstance(r["args"], dict)
            and (r["args"].get("register_receipt") or {}).get("receipt", {}).get("receipt_id") == receipt_id
        ]
    hubs: list[dict[str, Any]] = []
    for r in sorted(ours, key=lambda r: str(r["hub_id"])):
        state = r["status"] if r["status"] != "pending" else ("delivered" if r["delivered_at"] else "pending")
        entry: dict[str, Any] = {"hub_id": r["hub_id"], "state": state}
        detail = r["detail"] if isinstance(r["detail"], dict) else {}
        hub_receipt = detail.get("receipt")
        if r["status"] == "done" and isinstance(hub_receipt, dict):
            try:
                v = receipts.verify(hub_receipt, registry.ca.cert_pem)
                entry |= {"signer": v.signer, "embedded": list(v.embedded), "verified": True}
            except receipts.ReceiptInvalid as exc:
                entry |= {"verified": False, "problem": str(exc)}
            entry["receipt"] = hub_receipt
        hubs.append(entry)
    return {
        "receipt_id": receipt_id,
        "register": {"receipt": mine, "signer": receipts.verify(mine, registry.ca.cert_pem).signer},
        "hubs": hubs,
        "done": all(h["state"] in ("done", "failed") for h in hubs),
    }


def openssl_parts(signed: dict[str, Any]) -> dict[str, bytes]:
    """The exact bytes a member needs to check a receipt with openssl alone: the signed body (canonical JSON),
    the DER signature and the signer's certificate."""
    return {
        "body": receipts.canonical(signed["receipt"]),
        "signature": base64.b64decode(signed["signature"]),
        "certificate": str(signed.get("certificate", "")).encode(),
    }


class ProgressTokens:
    """Signed tokens naming one household's one erasure, valid for :data:`TTL_S` (itsdangerous, with a key kept
    in the register's state directory)."""

    TTL_S: Final = 24 * 3600
    _SALT: Final = "kotihub.erase-progress.v1"

    def __init__(self, registry: Registry) -> None:
        self._s = URLSafeTimedSerializer(load_key(registry.settings.state_dir), salt=self._SALT)

    def make(self, household_id: str, receipt_id: str) -> str:
        return self._s.dumps([household_id, receipt_id])

    def read(self, token: str) -> tuple[str, str]:
        try:
            household_id, receipt_id = self._s.loads(token, max_age=self.TTL_S)
        except SignatureExpired:
            raise Forbidden("this progress link has expired", code="link_expired") from None
        except (BadSignature, ValueError, TypeError):
            raise Forbidden("not a progress link of this register", code="bad_link") from None
        return str(household_id), str(receipt_id)
