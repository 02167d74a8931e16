"""The household's rights on the hub: erasure ("Poista tietoni") and export ("Näytä tietoni").

**Erasure** is a job recorded durably before it starts and resumed after a crash or power cut until it completes;
every step is idempotent. Erasing everything destroys every data key first, so the data is unreadable from the
first step on. Erasing one device or one category cannot destroy keys other data shares: its readings are replaced
by tombstones (same sequence, no content) and its records deleted, with ``secure_delete`` zeroing the old pages and
a WAL truncation at the end; the old ciphertext that may remain on worn flash blocks is under day keys that
retention destroys when those days expire. Export archives waiting in the runtime directory are deleted too.

The requester gets a receipt signed with the hub's enrolled key (``cloud_sync.receipts``). An erasure asked here
also waits in the erasure outbox until the uplink has carried it to the register, whose signed receipt then joins
ours; one the register asked for carries the register's receipt inside ours (docs/erasure.md).

**Export** writes a zip archive, streamed (a large export never needs its size in memory): ``manifest.json`` (format,
counts, time range, SHA-256 of each member), ``devices.json``, ``readings.jsonl``, ``events.jsonl``, ``audit.json``,
``clips.json`` and ``clips/<id>.age`` (clip ciphertext; its age header carries the file key wrapped to each
member's key).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloud_sync import receipts
from gateway.errors import PermanentError
from gateway.model import Category, Lane
from gateway.store import TOMBSTONE_DEVICE, Settings, Store

log = logging.getLogger(__name__)

EXPORT_FORMAT: Final = "kotihub-export/1"
JOB_KEY: Final = "erasure_job"
RECEIPTS_KEY: Final = "erasure_receipts"
OUTBOX_KEY: Final = "erasure_outbox"
REGISTER: Final = "register"
"""``origin`` (and ``requested_by``) of an erasure the register asked for."""

# Which item lanes and event kinds belong to each category.
CATEGORY_LANES: Final[dict[Category, tuple[str, ...]]] = {
    Category.SENSORS: (),
    Category.ALARMS: (Lane.ALARM.value,),
    Category.CAMERA: (Lane.CLIPS.value,),
    Category.PRESENCE: (),
    Category.DIAGNOSTICS: (Lane.DIAGNOSTICS.value,),
}
PRESENCE_KINDS: Final = ("motion", "contact")


Signer = Callable[[], tuple[ec.EllipticCurvePrivateKey | Ed25519PrivateKey, str | None]]


class ErasureJob(msgspec.Struct):
    job_id: str
    scope: str
    """``all``, ``device`` or ``category``."""
    target: str
    requested_by: str
    requested_at: float
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    register_receipt: dict[str, Any] | None = None
    """Set when the register asked: its signed receipt of what it erased, which ours then includes."""
    origin: str = "hub"
    """``hub`` (carried on to the register) or :data:`REGISTER` (never sent back to it)."""


def receipt_key(master_key: bytes) -> Ed25519PrivateKey:
    """The signing key of a hub that was never enrolled, derived from the master key (it needs no storage). Its
    receipts prove integrity but not which hub issued them; an enrolled hub signs with its certificate's key."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"kotihub/receipt-signing/v1").derive(master_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def hub_signer(state_dir: Path | None, master_key: bytes) -> Signer:
    """The hub's receipt signer: its mTLS key and the certificate the register issued at enrollment, read at each
    signing (a renewal replaces them); the derived key while the hub is not enrolled."""

    def signer() -> tuple[ec.EllipticCurvePrivateKey | Ed25519PrivateKey, str | None]:
        if state_dir is not None and (state_dir / "hub.key").exists() and (state_dir / "hub.crt").exists():
            key = serialization.load_pem_private_key((state_dir / "hub.key").read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key, (state_dir / "hub.crt").read_text()
        return receipt_key(master_key), None

    return signer


def sign_receipt(signer: Signer, body: dict[str, Any]) -> dict[str, Any]:
    key, cert = signer()
    return receipts.sign(key, body, cert_pem=cert)


def verify_receipt(signed: dict[str, Any], ca_pem: bytes | None = None) -> bool:
    """True if the receipt (and any receipt of the register it carries) is intact and, given the register's CA
    certificate, signed by whom it claims."""
    try:
        receipts.verify(signed, ca_pem)
    except receipts.ReceiptInvalid:
        return False
    return True


class ErasureOutbox:
    """Erasures asked on this hub that the register has yet to carry out, kept in the store (``settings``) and sent
    by the uplink whenever the register is reachable: the same durability as every other outbox item."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiter = asyncio.Event()

    async def pending(self) -> list[dict[str, Any]]:
        return list(await self.store.get_setting(OUTBOX_KEY, []))

    async def carried(self, receipt_id: str, register_receipt: dict[str, Any]) -> None:
        """The register erased its copy: its signed receipt joins ours, and the request leaves the outbox."""
        await self._settle(receipt_id, {"register_receipt": register_receipt})

    async def refused(self, receipt_id: str, reason: str) -> None:
        """The register refused the request for good (4xx): said in the receipt, not retried."""
        log.error("the register refused to carry out an erasure: %s", reason)
        await self._settle(receipt_id, {"register_error": reason[:300]})

    async def _settle(self, receipt_id: str, extra: dict[str, Any]) -> None:
        def write(settings: Settings) -> None:
            outbox = [e for e in settings.get(OUTBOX_KEY, []) if e.get("receipt_id") != receipt_id]
            stored = settings.get(RECEIPTS_KEY, [])
            for signed in stored:
                if signed.get("receipt", {}).get("receipt_id") == receipt_id:
                    signed.update(extra)
            settings.put(OUTBOX_KEY, outbox)
            settings.put(RECEIPTS_KEY, stored)

        await self.store.edit_settings(write)


class Eraser:
    """Runs erasure jobs to completion; :meth:`resume` finishes one a crash interrupted."""

    def __init__(
        self,
        store: Store,
        master_key: bytes,
        *,
        spool_dir: Path | None,
        hub_name: str,
        state_dir: Path | None = None,
        exports_dir: Path | None = None,
        carry: bool = False,
    ) -> None:
        """``carry``: erasures asked here go on to the register (the hub syncs); ``state_dir`` holds the hub's
        enrollment key and certificate, which sign receipts; ``exports_dir`` holds export archives (plaintext), which
        every erasure deletes."""
        self.store = store
        self.exports_dir = exports_dir
        self.spool_dir = spool_dir
        self.hub_name = hub_name
        self._signer = hub_signer(state_dir, master_key)
        self.carry = carry
        self.outbox = ErasureOutbox(store)
        self.on_erased: list[Callable[[ErasureJob], None]] = []

    async def request(
        self,
        scope: str,
        target: str = "",
        *,
        requested_by: str,
        origin: str = "hub",
        register_receipt: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if scope not in ("all", "device", "category"):
            raise PermanentError("erasure scope is all, device or category")
        if scope == "category":
            Category(target)  # raises ValueError for an unknown category
        job = ErasureJob(
            uuid.uuid4().hex, scope, target, requested_by, time.time(), register_receipt=register_receipt, origin=origin
        )
        # Recorded and committed before anything is touched: a crash from here on resumes the job.
        await self.store.set_setting(JOB_KEY, msgspec.to_builtins(job))
        return await self._run(job)

    async def resume(self) -> dict[str, Any] | None:
        pending = await self.store.get_setting(JOB_KEY)
        if not pending:
            return None
        job = msgspec.convert(pending, ErasureJob)
        log.warning("resuming an erasure interrupted by a restart")
        return await self._run(job)

    async def _run(self, job: ErasureJob) -> dict[str, Any]:
        counts: dict[str, int] = {}
        if job.scope == "all":
            counts = await self._erase_all()
        elif job.scope == "device":
            counts = await self._erase_where(device=job.target)
        else:
            counts = await self._erase_where(category=Category(job.target))
        counts["exports"] = await asyncio.to_thread(self._delete_exports)
        await self.store.scrub()
        body: dict[str, Any] = {
            "receipt_id": job.job_id,
            "side": "hub",
            "hub": self.hub_name,
            "scope": job.scope,
            "target": job.target,
            "requested_by": job.requested_by,
            "requested_at": job.requested_at,
            "completed_at": time.time(),
            "erased": counts,
        }
        if job.register_receipt is not None:
            body["register"] = job.register_receipt
        receipt = await asyncio.to_thread(sign_receipt, self._signer, body)
        # An erasure the register asked for is never sent back to it, with its receipt or without.
        carry = self.carry and job.origin != REGISTER

        def finish(settings: Settings) -> None:
            # The receipt, the request to the register and the end of the job commit together.
            settings.put(RECEIPTS_KEY, [*settings.get(RECEIPTS_KEY, [])[-49:], receipt])
            if carry:
                request = {
                    "receipt_id": job.job_id,
                    "scope": job.scope,
                    "target": job.target,
                    "requested_at": job.requested_at,
                    "hub_receipt": receipt,
                }
                settings.put(OUTBOX_KEY, [*settings.get(OUTBOX_KEY, []), request])
            settings.put(JOB_KEY, None)

        await self.store.edit_settings(finish)
        if carry:
            self.outbox.waiter.set()
        await self.store.audit(job.requested_by, "erase", f"{job.scope}:{job.target}", {"receipt": job.job_id})
        for callback in self.on_erased:
            callback(job)
        log.info("erasure of %s completed", job.scope)
        return receipt

    async def _erase_all(self) -> dict[str, int]:
        counts = await self.store.erase_everything()
        counts["clip_files"] = self._delete_spool(None)
        return counts

    async def _erase_where(self, *, device: str | None = None, category: Category | None = None) -> dict[str, int]:
        store = self.store
        counts = {"readings": 0, "items": 0, "devices": 0, "clip_files": 0}
        readings_too = device is not None or category is Category.SENSORS
        if readings_too:
            counts["readings"] = await store.erase_readings(device)
        lanes = CATEGORY_LANES.get(category, ()) if category is not None else tuple(lane.value for lane in Lane)
        kinds = PRESENCE_KINDS if category is Category.PRESENCE else None
        if category is Category.SENSORS:
            lanes, kinds = (Lane.EVENTS.value,), ("water_leak", "availability")
        clip_refs: list[str] = []
        for lane in lanes or ((Lane.EVENTS.value,) if kinds else ()):
            deleted, refs = await store.erase_items(lane, device=device, kinds=kinds)
            counts["items"] += deleted
            clip_refs += refs
        if device is not None:
            counts.update(await store.forget_device(device))
        counts["clip_files"] = self._delete_spool(clip_refs)
        return counts

    def _delete_exports(self) -> int:
        """Export archives are the household's data in plaintext: any erasure makes every earlier one untrue."""
        if self.exports_dir is None or not self.exports_dir.exists():
            return 0
        removed = 0
        for path in self.exports_dir.glob("kotihub-export-*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def _delete_spool(self, refs: list[str] | None) -> int:
        if self.spool_dir is None or not self.spool_dir.exists():
            return 0
        paths = list(self.spool_dir.glob("*.age")) if refs is None else [self.spool_dir / f"{r}.age" for r in refs]
        removed = 0
        for path in paths:
            if path.exists():
                path.unlink()
                removed += 1
        return removed


# ---- export --------------------------------------------------------------------------------------------------------


@dataclass
class ExportProgress:
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None
    path: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class _HashingWriter:
    """Wraps a zip member stream, hashing and counting what passes through."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.stream.write(data)


def export_archive(store: Store, out: Path, *, hub_name: str, spool_dir: Path | None, progress: ExportProgress) -> None:
    """Writes the household's export to ``out`` (blocking; run it in a worker thread)."""
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as sink:
        write_archive(store, sink, hub_name=hub_name, spool_dir=spool_dir, progress=progress)
    tmp.chmod(0o640)
    tmp.replace(out)
    progress.path = str(out)
    progress.finished = True


def write_archive(
    store: Store, sink: IO[bytes], *, hub_name: str, spool_dir: Path | None, progress: ExportProgress
) -> None:
    """Writes the household's export as a zip to ``sink``, which need not be seekable (a pipe into age
    encryption: :mod:`gateway.hub_export`). Blocking; run it in a worker thread."""
    progress.total = store.count_records()
    digests: dict[str, str] = {}
    counts: dict[str, int] = {}
    first_ts: float | None = None
    last_ts: float | None = None

    def member(zf: zipfile.ZipFile, name: str, lines: Iterator[bytes]) -> int:
        n = 0
        with zf.open(name, "w", force_zip64=True) as raw:
            w = _HashingWriter(raw)
            for line in lines:
                w.write(line)
                n += 1
        digests[name] = w.sha.hexdigest()
        return n

    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def reading_lines() -> Iterator[bytes]:
            nonlocal first_ts, last_ts
            for seq, r in store.iter_readings(skip_destroyed=True):
                progress.done += 1
                if r.device_id == TOMBSTONE_DEVICE:
                    continue
                first_ts = r.ts if first_ts is None else min(first_ts, r.ts)
                last_ts = r.ts if last_ts is None else max(last_ts, r.ts)
                yield (
                    json.dumps(
                        {
                            "seq": seq,
                            "device_id": r.device_id,
                            "quantity": r.quantity.value,
                            **({"channel": r.channel} if r.channel else {}),
                            "value": r.value,
                            "ts": r.ts,
                        }
                    ).encode()
                    + b"\n"
                )

        counts["readings"] = member(zf, "readings.jsonl", reading_lines())

        def event_lines() -> Iterator[bytes]:
            for lane in (Lane.ALARM, Lane.EVENTS, Lane.DIAGNOSTICS):
                for item in store.iter_items(lane, skip_destroyed=True):
                    progress.done += 1
                    yield json.dumps({"lane": lane.value, "seq": item.seq, **item.body}).encode() + b"\n"

        counts["events"] = member(zf, "events.jsonl", event_lines())
        devices = [
            {**msgspec.to_builtins(d.info), "first_seen": d.first_seen, "last_seen": d.last_seen}
            for d in store.iter_devices(skip_destroyed=True)
        ]
        counts["devices"] = member(zf, "devices.json", iter([json.dumps(devices, indent=1).encode()])) and len(devices)
        audit = [msgspec.to_builtins(a) for a in store.iter_audit(skip_destroyed=True)]
        counts["audit"] = member(zf, "audit.json", iter([json.dumps(audit, indent=1).encode()])) and len(audit)
        clips = []
        for item in store.iter_items(Lane.CLIPS, skip_destroyed=True):
            progress.done += 1
            clips.append(item.body)
            path = spool_dir / f"{item.body.get('clip_id')}.age" if spool_dir else None
            if path is not None and path.exists():
                name = f"clips/{path.name}"
                with zf.open(name, "w", force_zip64=True) as raw, path.open("rb") as src:
                    w = _HashingWriter(raw)
                    while chunk := src.read(1 << 20):
                        w.write(chunk)
                digests[name] = w.sha.hexdigest()
        counts["clips"] = len(clips)
        member(zf, "clips.json", iter([json.dumps(clips, indent=1).encode()]))
        manifest = {
            "format": EXPORT_FORMAT,
            "created": time.time(),
            "hub": hub_name,
            "counts": counts,
            "time_range": {"first": first_ts, "last": last_ts},
            "files": digests,
            "notes": "readings and events are JSON lines; clips are age ciphertext decryptable only with a"
            " household member's identity (kotihub clip decrypt)",
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    progress.counts = counts
