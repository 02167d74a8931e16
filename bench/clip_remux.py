"""CPU the MP4 remux adds to a camera clip, beside what sealing the clip (and recording it) costs in the same run.

Run: ``.venv/bin/python bench/clip_remux.py [--seconds 60] [--rounds 3]``. Not a test: it prints figures and ratios.

A synthetic camera stream (720p25 H.264 at 4 Mbit/s with 16 kHz mono AAC, as MPEG-TS; generated once into a
temporary directory) is put through, best of ``--rounds``:

- ``segmenter``: ffmpeg stream-copying it into 2 s segments, as the recorder does all day (the recording baseline);
- ``seal``: the TS read through :class:`~drivers.camera.recorder.ClipFeed` and age-encrypted to a discarding sink,
  as clips were sealed before (the clip baseline);
- ``remux+seal``: the same through :class:`~drivers.camera.remux.Remux` first, as clips are sealed now.

CPU is user + system seconds of this process and of its ffmpeg children (``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyrage import x25519  # noqa: E402

from drivers.camera.recorder import ClipFeed  # noqa: E402
from drivers.camera.remux import Remux  # noqa: E402
from gateway.store.clips import encrypt_stream  # noqa: E402


class Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(memoryview(data))


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(rounds: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        before = cpu()
        run()
        best = min(best, cpu() - before)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    recipients = [x25519.Identity.generate().to_public()]
    with tempfile.TemporaryDirectory(prefix="kotihub-bench-") as tmp:
        source = Path(tmp) / "cam.ts"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=16000",
             "-t", str(args.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-maxrate", "4M",
             "-bufsize", "8M", "-g", "50", "-c:a", "aac", "-ac", "1", "-f", "mpegts", str(source)],
            check=True,
        )  # fmt: skip
        ring = Path(tmp) / "ring"
        ring.mkdir()

        def segmenter() -> None:
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source), "-map", "0:v:0",
                 "-map", "0:a?", "-c", "copy", "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts",
                 "-segment_list", "pipe:1", "-segment_list_type", "csv", str(ring / "seg%010d.ts")],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            for segment in ring.iterdir():
                segment.unlink()

        def feed() -> ClipFeed:
            clip = ClipFeed()
            clip.push(source)
            clip.end()
            return clip

        def seal() -> None:
            encrypt_stream(feed(), Discard(), recipients)

        out_bytes = 0

        def remux_seal() -> None:
            nonlocal out_bytes
            with Remux(feed()) as mp4:
                encrypt_stream(mp4, Discard(), recipients)
                out_bytes = mp4.bytes_out

        t0 = time.monotonic()
        seg_cpu = measure(args.rounds, segmenter)
        seal_cpu = measure(args.rounds, seal)
        remux_cpu = measure(args.rounds, remux_seal)
        wall = time.monotonic() - t0
    stream_s = args.seconds
    added = remux_cpu - seal_cpu
    print(f"clip: {stream_s} s of 720p25 H.264 4 Mbit/s + AAC, {source_size(out_bytes)} MP4 out; best of {args.rounds}")
    print(f"  segmenter (recording baseline): {seg_cpu:6.3f} CPU s  = {seg_cpu / stream_s * 100:5.2f} % of a core")
    print(f"  seal TS (clip baseline):        {seal_cpu:6.3f} CPU s  = {seal_cpu / stream_s * 100:5.2f} % of a core")
    print(f"  remux to MP4 + seal:            {remux_cpu:6.3f} CPU s  = {remux_cpu / stream_s * 100:5.2f} % of a core")
    per_s = added / stream_s * 1000
    print(f"  added by the remux: {added:.3f} CPU s per {stream_s} s clip ({per_s:.1f} ms per clip-second)")
    print(f"  ratio remux+seal / seal: {remux_cpu / seal_cpu:.2f}x; remux added / segmenter: {added / seg_cpu:.2f}x")
    print(f"  (wall {wall:.1f} s for all rounds; the machine is shared, figures measured under load)")


def source_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


if __name__ == "__main__":
    main()
