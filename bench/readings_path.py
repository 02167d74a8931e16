"""The register's readings path on PostgreSQL, each part beside its baseline measured in the same run (issue 17):

* decode: ``protocol.decode_batch`` (strings checked once per distinct value) against the same batch decoded with
  the patterns on every item (msgspec ``Meta`` per field, as before);
* store: ``partitions.copy_readings(direct=True)`` (``COPY`` straight into ``readings``) against the stage path
  (``COPY`` into the temporary stage, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``), one hub's batches of
  5,000, PostgreSQL CPU per 100,000 readings (its postmaster and backends) and the register side's Python CPU.

Run: ``.venv/bin/python bench/readings_path.py [--batches 40]``. Not a test: it prints figures; the machine's other
load is not controlled (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import msgspec  # noqa: E402
from fleet import backlog_items, postgres_cpu_s  # noqa: E402

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.register import partitions  # noqa: E402
from cloud_sync.register.registry import Registry  # noqa: E402
from cloud_sync.register.settings import Settings  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

BATCH = 5_000
T0 = time.time() - 7 * 86_400


class _PerItemBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The reading body as it was decoded before: every string checked against its pattern on every item."""

    device_id: Annotated[str, p.READING_STRING_RULES["device_id"]]
    quantity: Annotated[str, p.READING_STRING_RULES["quantity"]]
    value: p._Finite
    ts: p._Ts
    channel: Annotated[str, p.READING_STRING_RULES["channel"]] = ""


class _PerItemItem(msgspec.Struct, frozen=True):
    seq: p._Seq
    ts: p._Ts
    body: _PerItemBody


class _PerItemBatch(msgspec.Struct, frozen=True):
    hub_id: p._Id
    lane: p.LaneName
    items: list[_PerItemItem]


def batch_bytes(hub_id: str, first: int) -> bytes:
    items = backlog_items(first, BATCH, T0)
    return p.decompress_bounded(p.encode_batch(p.IngestBatch(hub_id=hub_id, lane="readings", items=items)))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_us(payload: bytes, rounds: int) -> tuple[float, float]:
    """Best of ``rounds`` microseconds per reading: (per-item patterns, per distinct value)."""
    decoder = msgspec.msgpack.Decoder(_PerItemBatch)

    def before() -> None:
        prev = -1
        for item in decoder.decode(payload).items:  # and the seqs checked in a Python loop, as before
            assert item.seq > prev
            prev = item.seq

    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for k, fn in enumerate((before, lambda: p.decode_batch("readings", payload))):
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], (time.perf_counter() - t) / BATCH * 1e6)
    return best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40, help="batches of 5,000 stored per path")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    payload = batch_bytes("hub-decode", 0)
    per_item, distinct = decode_us(payload, 20)

    cluster = start_cluster()
    tmp = Path(tempfile.mkdtemp(prefix="kotihub-readings-"))
    try:
        reg = Registry(Settings(state_dir=tmp / "register", db_url=cluster.url(cluster.create_database())))
        household = reg.create_household("bench", actor="bench")
        results = {}
        for direct in (False, True, False, True):  # interleaved, so both paths see the same machine
            hub = f"hub-{direct}-{len(results)}-{time.monotonic_ns()}"
            batches = [p.decode_batch("readings", batch_bytes(hub, k * BATCH)) for k in range(args.batches)]
            pg0, py0, t = postgres_cpu_s(cluster), cpu(), time.perf_counter()
            for b in batches:
                assert isinstance(b, p.ReadingsBatch)
                with reg.engine.begin() as conn:
                    rows = partitions.reading_rows(b.items, hub, household, time.time())
                    assert partitions.copy_readings(conn, rows, direct=direct) == BATCH
            wall = time.perf_counter() - t
            n = args.batches * BATCH
            run = (n / wall, (postgres_cpu_s(cluster) - pg0) * 1e5 / n, (cpu() - py0) * 1e5 / n)
            prev = results.get(direct)
            results[direct] = run if prev is None or run[1] < prev[1] else prev  # the less disturbed of two
        reg.close()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    stage, straight = results[False], results[True]
    print(f"load average: {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work included)")
    print(f"decode, per-item patterns (before):   {per_item:8.3f} us/reading")
    print(f"decode, per distinct value (now):     {distinct:8.3f} us/reading   ({per_item / distinct:.1f}x cheaper)")
    print(f"store via stage + ON CONFLICT:        {stage[0]:8,.0f} readings/s  PostgreSQL {stage[1]:.2f} CPU-s/100k")
    print(
        f"store by straight COPY (now):         {straight[0]:8,.0f} readings/s  PostgreSQL {straight[1]:.2f} CPU-s/100k"
        f"   ({stage[1] / straight[1]:.1f}x cheaper)"
    )
    print(f"register-side Python CPU (rows + COPY stream): {stage[2]:.3f} -> {straight[2]:.3f} s/100k")


if __name__ == "__main__":
    main()
