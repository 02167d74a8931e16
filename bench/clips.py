"""Clip encryption: age (pyrage, streaming) beside the ceiling of raw ChaCha20-Poly1305, plus CPU per camera-hour.

Run: ``.venv/bin/python bench/clips.py [--mib 1024]``. Not a test: it prints figures and ratios.

Phases, each in its own child process so each peak RSS is its own:

- ``age-null``: a generated clip (``--mib`` MiB, streamed from a 1 MiB random block, never held whole) through
  :func:`drivers.camera.clips.encrypt_stream` (``pyrage.encrypt_io``) to a sink that discards: the
  encryption path alone.
- ``age-spool``: the same through :func:`drivers.camera.clips.seal_stream` into a real spool file (sha256,
  fsync, rename): what the hub really does. The file is deleted afterwards.
- ``ceiling``: ``cryptography``'s ChaCha20Poly1305 over the same bytes in memory, in 64 KiB chunks like age's STREAM
  (the best a streaming AEAD can do here), and in one 64 MiB call.
- ``segmenter``: ffmpeg stream-copying a 4 Mbit/s H.264 MPEG-TS into 2 s segments, as the recorder does, timed in
  CPU seconds per stream second, to give CPU per camera-hour.

Targets: age ≥ 25 % of the ceiling; peak memory of the age phases < 64 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLOCK = 1 << 20
CHUNK = 64 * 1024
CAMERA_BITRATE = 4_000_000  # bit/s
CAMERA_HOUR_BYTES = CAMERA_BITRATE // 8 * 3600


class GeneratedClip(io.RawIOBase):
    """``total`` bytes of incompressible data, streamed from one random block (memory: one block)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.remaining = total
        self.block = memoryview(os.urandom(BLOCK))
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.remaining, BLOCK - self.offset)
        if n <= 0:
            return 0
        view[:n] = self.block[self.offset : self.offset + n]
        self.offset = (self.offset + n) % BLOCK
        self.remaining -= n
        return n


class CountingNull(io.RawIOBase):
    """Discards the ciphertext, counting it: the encryption path alone, like the in-memory ceiling."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_age_null(total: int) -> dict[str, Any]:
    from pyrage import x25519

    from gateway.store.clips import encrypt_stream

    recipient = x25519.Identity.generate().to_public()
    source, sink = GeneratedClip(total), CountingNull()
    baseline = _peak_mb()
    t0, c0 = time.perf_counter(), _cpu()
    encrypt_stream(source, sink, [recipient])
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"bytes": total, "ciphertext": sink.size, "wall_s": wall, "cpu_s": cpu, "peak_mb": _peak_mb(),
            "baseline_mb": baseline}  # fmt: skip


def phase_age_spool(total: int, spool: Path) -> dict[str, Any]:
    from pyrage import x25519

    from gateway.store.clips import seal_stream

    recipient = str(x25519.Identity.generate().to_public())
    baseline = _peak_mb()
    t0, c0 = time.perf_counter(), _cpu()
    path, size, _ = seal_stream(GeneratedClip(total), spool=spool, clip_id="bench", recipients=[recipient])
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    path.unlink()
    return {"bytes": total, "ciphertext": size, "wall_s": wall, "cpu_s": cpu, "peak_mb": _peak_mb(),
            "baseline_mb": baseline}  # fmt: skip


def phase_ceiling(total: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    source = GeneratedClip(total)
    buffer = bytearray(BLOCK)
    t0 = time.perf_counter()
    counter = 0
    while n := source.readinto(buffer):
        view = memoryview(buffer)[:n]
        for start in range(0, n, CHUNK):
            aead.encrypt(counter.to_bytes(12, "big"), view[start : start + CHUNK], None)
            counter += 1
    chunked = time.perf_counter() - t0
    big = os.urandom(64 * BLOCK)
    t0 = time.perf_counter()
    aead.encrypt(b"\0" * 12, big, None)
    one_shot = (time.perf_counter() - t0) * total / len(big)
    return {"bytes": total, "chunked_wall_s": chunked, "one_shot_wall_s": one_shot, "peak_mb": _peak_mb()}


def phase_segmenter(seconds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kotihub-bench-") as tmp:
        source = Path(tmp) / "cam.ts"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-maxrate", "4M",
             "-bufsize", "8M", "-g", "50", "-f", "mpegts", str(source)],
            check=True,
        )  # fmt: skip
        (Path(tmp) / "ring").mkdir()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source), "-map", "0:v:0",
             "-c", "copy", "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts",
             "-segment_list", "pipe:1", "-segment_list_type", "csv", str(Path(tmp) / "ring" / "seg%010d.ts")],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"stream_s": seconds, "bytes": source.stat().st_size, "cpu_s": cpu}


def child(phase: str, mib: int, spool: str) -> None:
    total = mib * BLOCK
    if phase == "age-null":
        result = phase_age_null(total)
    elif phase == "age-spool":
        result = phase_age_spool(total, Path(spool))
    elif phase == "ceiling":
        result = phase_ceiling(total)
    else:
        result = phase_segmenter(60)
    print(json.dumps(result))


def run_child(phase: str, mib: int, spool: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--mib", str(mib), "--spool", str(spool)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="clip size in MiB (default 1024 = 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best is kept (default 3)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--spool", default="", help="spool directory for the age-spool phase (default: a temp dir)")
    args = parser.parse_args()
    if args.phase:
        child(args.phase, args.mib, args.spool)
        return

    import pyrage  # noqa: F401 - fail early if missing
    from cryptography import __version__ as crypto_version

    # The machine may be shared: phases alternate and each keeps its best (fastest) of --repeat runs.
    best: dict[str, dict[str, Any]] = {}

    def keep(name: str, result: dict[str, Any], key: str) -> None:
        if name not in best or result[key] < best[name][key]:
            best[name] = result

    with tempfile.TemporaryDirectory(prefix="kotihub-bench-spool-", dir=args.spool or None) as spool:
        for _ in range(args.repeat):
            keep("ceiling", run_child("ceiling", args.mib, Path(".")), "chunked_wall_s")
            keep("age-null", run_child("age-null", args.mib, Path(spool)), "wall_s")
            keep("age-spool", run_child("age-spool", args.mib, Path(spool)), "wall_s")
    age_null, age_spool, ceiling = best["age-null"], best["age-spool"], best["ceiling"]
    seg = run_child("segmenter", args.mib, Path("."))

    mb = args.mib * BLOCK / 1e6
    age_mbs = mb / age_null["wall_s"]
    spool_mbs = mb / age_spool["wall_s"]
    ceil_mbs = mb / ceiling["chunked_wall_s"]
    one_shot_mbs = mb / ceiling["one_shot_wall_s"]
    enc_cpu_per_hour = age_null["cpu_s"] / age_null["bytes"] * CAMERA_HOUR_BYTES
    seg_cpu_per_hour = seg["cpu_s"] / seg["stream_s"] * 3600
    print(
        f"clip: {args.mib} MiB generated and streamed; best of {args.repeat}; cryptography {crypto_version}; "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  age encrypt_stream -> null   : {age_mbs:8.1f} MB/s  peak RSS {age_null['peak_mb']:.1f} MB")
    print(f"  age seal_stream -> spool file: {spool_mbs:8.1f} MB/s  peak RSS {age_spool['peak_mb']:.1f} MB "
          "(sha256 + write + fsync)")  # fmt: skip
    print(f"  ChaCha20-Poly1305, 64 KiB    : {ceil_mbs:8.1f} MB/s  (ceiling, in memory)")
    print(f"  ChaCha20-Poly1305, one call  : {one_shot_mbs:8.1f} MB/s  (one 64 MiB call, output allocation included)")
    print(f"  ratio age / ceiling          : {age_mbs / ceil_mbs:8.1%}  (target >= 25%)")
    print(f"  ratio spool / ceiling        : {spool_mbs / ceil_mbs:8.1%}")
    peak = max(age_null["peak_mb"], age_spool["peak_mb"])
    base = age_null["baseline_mb"]
    print(f"  peak memory (target < 64 MB) : {peak:8.1f} MB  {'met' if peak < 64 else 'MISSED'} "
          f"(interpreter + imports before encrypting: {base:.1f} MB)")  # fmt: skip
    print(f"CPU per camera-hour at 4 Mbit/s ({CAMERA_HOUR_BYTES / 1e9:.2f} GB/h):")
    print(f"  ffmpeg copy into 2 s segments: {seg_cpu_per_hour:8.1f} CPU-s/h ({seg_cpu_per_hour / 36:.2f} % of a core)")
    print(
        f"  age, if every byte were a clip: {enc_cpu_per_hour:7.1f} CPU-s/h ({enc_cpu_per_hour / 36:.2f} % of a core)"
    )


if __name__ == "__main__":
    main()
