"""reliability_security.md §6.9: feed frames with a known marker and watch every write(2) of the recording
process and its ffmpeg children with strace: the marker reaches the tmpfs ring (so the scan can see it) and never
a file on persistent storage; the spool receives only ciphertext."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import msgspec

from drivers.camera import ringbuffer
from gateway.model import Clip
from gateway.store.clips import decrypt_clip
from kotihub_tools.simulators.camera import MARKER, SimulatedCamera
from tests.support.camera import Member

# `strace -y -xx` prints each fd with its path and every data byte as \xNN.
_CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>, (.*)$")
_WRITES = ("write", "pwrite64", "writev", "pwritev", "pwritev2")
_COPIES = ("sendfile", "copy_file_range", "splice")


def _hex(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def _unhex(text: str) -> str:
    """Undoes ``-xx`` escaping (which strace applies to the fd paths too)."""
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), text.encode("latin-1"))
    return raw.decode("utf-8", "replace")


def test_no_plaintext_marker_is_written_to_persistent_storage(tmp_path: Path, ram_dir: Path, member: Member) -> None:
    spool = tmp_path / "spool"
    trace = tmp_path / "writes.strace"
    ring = ram_dir / "ring"

    async def main() -> Clip:
        async with SimulatedCamera(mdns_enabled=False) as cam:
            proc = await asyncio.create_subprocess_exec(
                "strace", "-f", "-qq", "-y", "-xx", "-s", "1048576", "-o", str(trace),
                "-e", f"trace={','.join(_WRITES + _COPIES)}",
                sys.executable, "-m", "tests.support.camera_clip_child",
                cam.stream_url, cam.mac, str(ring), str(spool), member.recipient,
                stdout=asyncio.subprocess.PIPE,
                cwd=Path(__file__).resolve().parents[2],
            )  # fmt: skip
            async with asyncio.timeout(60):
                out, _ = await proc.communicate()
            assert proc.returncode == 0
            return msgspec.json.decode(out.splitlines()[-1], type=Clip)

    clip = asyncio.run(main())
    mountinfo = Path("/proc/self/mountinfo").read_text()
    marker = _hex(MARKER)
    to_ring = 0
    to_storage: list[str] = []
    storage_files: set[str] = set()
    for line in trace.read_text().splitlines():
        call = _CALL.match(line)
        if call is None:
            continue
        name, _, escaped_path, rest = call.groups()
        path = _unhex(escaped_path)
        on_storage = path.startswith("/") and not path.startswith(("/dev/", "/proc/"))
        on_storage = on_storage and ringbuffer.fs_type_of(path, mountinfo) not in ringbuffer.RAM_FILESYSTEMS
        if on_storage:
            storage_files.add(path)
            assert name not in _COPIES, f"{name} into {path} bypasses the scan"
        if marker in rest:
            if on_storage:
                to_storage.append(path)
            elif path.startswith(str(ring)):
                to_ring += 1
    assert to_ring >= 1, "the marker was written to the RAM ring, so the scan sees plaintext where it is"
    assert to_storage == []
    assert f"{spool / clip.clip_id}.age.tmp" in storage_files, "the spool writes were traced"
    assert not any(ring.rglob("*.ts")), "the ring was wiped when the driver stopped"
    out = tmp_path / "household.mp4"
    decrypt_clip(member.identity_file, spool / f"{clip.clip_id}.age", out, expected_sha256=clip.sha256)
    assert MARKER in out.read_bytes(), "the marker survives the remux (-c:v copy keeps the SEI units)"
