"""The register's ``export`` command: the household's copy of what this hub holds, sealed to its members.

The archive is the one ``kotihub export`` writes (:func:`gateway.privacy.write_archive`, restricted and erased
data left out the same way), but it never exists in plaintext on disk: the zip is written into a pipe, and age
encryption (:func:`gateway.store.clips.encrypt_stream`) reads the other end and writes ciphertext only, to the
verified member list's recipients (:mod:`gateway.members`). The operator's register stores that ciphertext and
cannot open it; a member's browser can.

The ciphertext is kept under the command's id (``<runtime>/exports/kotihub-export-<id>.age``) until the register
holds every byte, so a hub killed mid-upload resends the same file: the register's resumable upload
(``PUT``/``PATCH /v1/exports/{id}``, the clip upload's offset and digest rules) makes it arrive exactly once. Any
erasure on the hub deletes it with the plaintext exports (:class:`gateway.privacy.Eraser`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from gateway.errors import PermanentError, TransientError
from gateway.privacy import ExportProgress, write_archive
from gateway.store.clips import encrypt_stream, parse_recipients

if TYPE_CHECKING:
    from cloud_sync.uplink import RegisterClient
    from gateway.store import Store

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
SEND_FOR_S = 600.0
"""How long the hub keeps resending before it reports the command failed (the household can ask again)."""


class NoRecipients(PermanentError):
    """No verified member list: nobody could open the copy, so none is made."""


def ciphertext_path(exports_dir: Path, export_id: str) -> Path:
    if not export_id.replace("_", "").replace("-", "").isalnum() or len(export_id) > 64:
        raise PermanentError("invalid export id")
    return exports_dir / f"kotihub-export-{export_id}.age"


def seal_export(
    store: Store, out: Path, *, recipients: Sequence[str], hub_name: str, spool_dir: Path | None
) -> dict[str, Any]:
    """Writes the sealed archive to ``out`` atomically (blocking); returns its counts, size and sha256."""
    if not recipients:
        raise NoRecipients("no verified member list: the hub has nobody to encrypt its copy to")
    parsed = parse_recipients(recipients)
    progress = ExportProgress()
    failure: list[BaseException] = []
    read_fd, write_fd = os.pipe()

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 16) as pipe:
                write_archive(store, pipe, hub_name=hub_name, spool_dir=spool_dir, progress=progress)
        except BaseException as exc:  # handed to the sealing thread, which must not publish a truncated copy
            failure.append(exc)

    tmp = out.with_name(out.name + ".tmp")
    digest, size = hashlib.sha256(), 0
    producer = threading.Thread(target=produce, name="export-zip", daemon=True)
    producer.start()
    try:
        with os.fdopen(read_fd, "rb") as source:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw:
                sink = _Sink(raw, digest)
                try:
                    encrypt_stream(source, sink, parsed)
                finally:
                    # If encryption stopped early, the producer must not block on a full pipe forever.
                    source.close()
                    producer.join()
                size = sink.size
                raw.flush()
                os.fsync(raw.fileno())
        if failure:
            # The pipe closed early, so age sealed a truncated archive: never keep or send it.
            raise failure[0]
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"counts": progress.counts, "size": size, "sha256": digest.hexdigest()}


class _Sink(io.RawIOBase):
    def __init__(self, raw: io.BufferedWriter, digest: Any) -> None:
        super().__init__()
        self._raw, self._digest, self.size = raw, digest, 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._raw.write(view)
        self._digest.update(view)
        self.size += len(view)
        return len(view)


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _read_chunk(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(CHUNK)


def upload(client: RegisterClient, export_id: str, path: Path) -> dict[str, Any]:
    """Resumable upload of a sealed copy (blocking): the register says how much it holds, the rest follows in
    chunks; done when the register verified our digest."""
    from cloud_sync import protocol as p
    from cloud_sync.uplink import RegisterRejected

    size, sha256 = _file_digest(path)
    record = p.ExportRecord(size=size, sha256=sha256)
    url = f"/v1/exports/{export_id}"
    state = client.decode(
        client.request("PUT", url, data=json.dumps({"size": size, "sha256": sha256}), headers=_JSON),
        p.ClipUploadStatus,
    )
    if state.complete and state.sha256 != sha256:
        # The register already holds this command's copy, complete and verified: a copy sealed again after a
        # restart that fell between the upload and the result. That copy is the answer; it is not replaced.
        return {"size": state.offset, "sha256": state.sha256}
    offset = state.offset
    while not state.complete:
        if not 0 <= offset <= size:
            raise client.bad_reply(f"export upload: the register holds {offset} bytes of {size}")
        chunk = _read_chunk(path, offset)
        try:
            resp = client.request(
                "PATCH", url, params={"offset": offset}, data=chunk, headers={"Content-Type": p.CLIP_CONTENT_TYPE}
            )
        except RegisterRejected as exc:
            if exc.status != 409 or exc.offset is None:
                raise
            offset = int(exc.offset)  # a reply was lost: resume where the register is
            continue
        state = client.decode(resp, p.ClipUploadStatus)
        if not state.complete and state.offset == offset and not chunk:
            raise client.bad_reply("export upload: the register left an export incomplete with every byte held")
        offset = state.offset
    if state.sha256 != record.sha256:
        raise client.bad_reply("export upload: the register completed an export with another digest")
    return {"size": size, "sha256": sha256}


_JSON = {"Content-Type": "application/json"}


def _prepared(exports_dir: Path, out: Path) -> bool:
    """Whether a sealed copy of this command is already here (sealed before a restart; resent as it is)."""
    exports_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    return out.exists()


async def send(client: Callable[[], RegisterClient], export_id: str, path: Path) -> dict[str, Any]:
    """Uploads the sealed copy, resuming after every transient failure (a lost reply, the register away) for up to
    :data:`SEND_FOR_S`; a refusal (4xx) is final and fails the command."""
    from cloud_sync.uplink import in_thread  # the uplink's own daemon threads: a stop never waits for an upload

    c = client()
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_delay(SEND_FOR_S),
            wait=wait_exponential(multiplier=0.2, max=10),
            reraise=True,
        ):
            with attempt:
                return await in_thread(upload, c, export_id, path)
    finally:
        c.close()
    raise AssertionError("unreachable: tenacity reraises")


async def run(
    store: Store,
    *,
    export_id: str,
    exports_dir: Path,
    recipients: Callable[[], list[str]],
    hub_name: str,
    spool_dir: Path | None,
    client: Callable[[], RegisterClient],
) -> dict[str, Any]:
    """The whole command: seal (unless a sealed copy of this command is already here), upload, forget."""
    out = ciphertext_path(exports_dir, export_id)
    counts: dict[str, int] = {}
    if not await asyncio.to_thread(_prepared, exports_dir, out):
        await store.flush()
        sealed = await asyncio.to_thread(
            seal_export, store, out, recipients=recipients(), hub_name=hub_name, spool_dir=spool_dir
        )
        counts = sealed["counts"]
        await store.audit("register", "export", "all", {"counts": counts, "sealed": True})
    try:
        sent = await send(client, export_id, out)
    except asyncio.CancelledError:
        raise  # the daemon stops: the register resends the command, and this copy goes as it is
    except BaseException:
        await asyncio.to_thread(out.unlink, missing_ok=True)  # failed for good: reported, never comes back
        raise
    # Delivered: the sealed copy has no further use here. A hub killed before this line keeps it for the resent
    # command.
    await asyncio.to_thread(out.unlink, missing_ok=True)
    log.info("the household's sealed copy is with the register (%d bytes)", sent["size"])
    return {"export_id": export_id, **sent, "counts": counts}
