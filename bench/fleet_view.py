"""Seeing a big fleet: the cost of one ``/metrics`` scrape, one fleet read and one heartbeat at N hubs.

Run: ``.venv/bin/python bench/fleet_view.py [--db postgresql+psycopg://…] [--hubs 50000] [--rounds 5]``.
Without ``--db`` the register uses SQLite in a temporary directory. Not a test: it prints figures, each beside a
baseline measured in the same run on the same database:

* a scrape (all gauges, ``generate_latest``) against one plain read of every ``hub_health`` row, and the alarm
  gauges (``notify.metrics``) and the rollout gauges alone against the same baseline; the database holds six
  months of alarms at ``--alarms-per-hub-day`` (one a fortnight by default: smoke tests, batteries, devices
  offline), four notification jobs each, as retention keeps them;
* a heartbeat (lag per lane from five index lookups, then the upsert) against the bare upsert of the same row.

Rows are written directly (no TLS), since the figures are about the database work behind each request.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud_sync import protocol as p  # noqa: E402
from cloud_sync.register import db, fleet  # noqa: E402
from cloud_sync.register.auth import HubIdentity  # noqa: E402
from cloud_sync.register.metrics import RegisterMetrics  # noqa: E402
from cloud_sync.register.notify import schema  # noqa: E402
from cloud_sync.register.notify.metrics import NotifyCollector  # noqa: E402
from cloud_sync.register.registry import Registry  # noqa: E402
from cloud_sync.register.rollout_metrics import RolloutCollector  # noqa: E402
from cloud_sync.register.settings import Settings  # noqa: E402


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def populate(registry: Registry, hubs: int, rng: random.Random) -> list[HubIdentity]:
    now = time.time()
    households = [{"id": f"hh_{i:08x}", "name": "", "created_at": now} for i in range((hubs + 1) // 2)]
    hub_rows, health = [], []
    for i in range(hubs):
        hub_id, household = f"hub_{i:08x}", households[i // 2]["id"]
        hub_rows.append(
            {
                "id": hub_id,
                "household_id": household,
                "name": "",
                "cert_sha256": "0" * 64,
                "enrolled_at": now,
                "last_seen": now - rng.uniform(0, 3600),
                "revoked": False,
            }
        )
        body = {"version": rng.choice(["1.0.0", "1.1.0", "1.2.0"]), "drivers": {"mqtt": {"state": "running"}}}
        health.append(
            {
                "hub_id": hub_id,
                "household_id": household,
                "received_at": now,
                "version": body["version"],
                "uptime_s": 1000.0,
                "disk_free_bytes": rng.randrange(1 << 30, 30 << 30),
                "disk_total_bytes": 32 << 30,
                "store_bytes": rng.randrange(1 << 20, 1 << 30),
                "written_bytes_per_day": rng.randrange(1 << 20, 1 << 30),
                "drivers_down": int(rng.random() < 0.02),
                **{f"lag_{lane}": rng.choice([0, 0, 0, rng.randrange(1, 5000)]) for lane in p.LANES},
                "body": body,
            }
        )
    with registry.engine.begin() as conn:
        conn.execute(insert(db.households), households)
        for start in range(0, hubs, 5000):
            conn.execute(insert(db.hubs), hub_rows[start : start + 5000])
            conn.execute(insert(db.hub_health), health[start : start + 5000])
    return [HubIdentity(hub_id=r["id"], household_id=r["household_id"]) for r in hub_rows]


def populate_alarms(registry: Registry, hubs: list[HubIdentity], per_hub_day: float, rng: random.Random) -> int:
    """Alarms over the retention period (183 days) with their jobs, most of them sent, some failed or cancelled."""
    now = time.time()
    total = round(len(hubs) * per_hub_day * 183)
    alarms, jobs = [], []
    for i in range(total):
        who = rng.choice(hubs)
        received = now - rng.uniform(0, 183 * 86_400)
        alarm_id = f"{who.hub_id}.alarm.{i}"
        urgent = rng.random() < 0.3
        alarms.append(
            {
                "id": alarm_id,
                "household_id": who.household_id,
                "hub_id": who.hub_id,
                "device_id": "zigbee:01",
                "category": "smoke" if urgent else "device_offline",
                "urgent": urgent,
                "place": "",
                "raised_at": received - rng.uniform(0.05, 0.5),
                "received_at": received,
                "late": False,
                # Smoke is acknowledged; a device offline is mostly cleared when it comes back, never acknowledged.
                "acked_at": received + 60 if urgent else None,
                "cleared_at": None if urgent else received + 600,
            }
        )
        for step, channel in enumerate(("sms", "email", "voice", "desk")):
            sent = rng.random() < 0.8
            jobs.append(
                {
                    "id": f"{alarm_id}.{step}",
                    "household_id": who.household_id,
                    "alarm_id": alarm_id,
                    "step": step,
                    "channel": channel,
                    "member_id": "m",
                    "due_at": received + 30 * step,
                    "state": "sent" if sent else rng.choice(["failed", "cancelled"]),
                    "attempts": 1,
                    "late": False,
                    "resends": 0,
                    "sent_at": received + 30 * step + rng.uniform(0.2, 3) if sent else None,
                    "provider_status": rng.choice(["delivered", "completed", "accepted"]) if sent else None,
                }
            )
    with registry.engine.begin() as conn:
        for start in range(0, total, 5000):
            conn.execute(insert(schema.alarms), alarms[start : start + 5000])
        for start in range(0, len(jobs), 20_000):
            conn.execute(insert(schema.notify_jobs), jobs[start : start + 20_000])
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None)
    ap.add_argument("--hubs", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--heartbeats", type=int, default=500)
    ap.add_argument("--alarms-per-hub-day", type=float, default=1 / 14)
    args = ap.parse_args()
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Settings(state_dir=Path(tmp), db_url=args.db))
        try:
            started = time.perf_counter()
            ids = populate(registry, args.hubs, rng)
            print(f"{args.hubs} hubs with health rows written in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            n_alarms = populate_alarms(registry, ids, args.alarms_per_hub_day, rng)
            took = time.perf_counter() - started
            print(f"{n_alarms} alarms (six months) with {4 * n_alarms} jobs written in {took:.1f} s")
            if registry.engine.dialect.name == "postgresql":
                # Statistics, as autovacuum keeps them on a running register: just after the bulk load there were
                # none, and PostgreSQL planned the alarm gauges as sequential scans (850 ms a scrape, not ~100).
                # SQLite's register never analyzes, so neither does the bench there.
                with registry.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    conn.commit()
            metrics = RegisterMetrics(registry)

            def read_all() -> None:
                with registry.engine.connect() as conn:
                    conn.execute(select(db.hub_health)).all()

            base = best(read_all, args.rounds)
            scrape = best(metrics.exposition, args.rounds)
            view = best(lambda: fleet.fleet(registry, actor="bench"), max(1, args.rounds // 2))
            print(f"scrape: {scrape * 1000:.1f} ms; baseline (read every hub_health row once): {base * 1000:.1f} ms;")
            print(f"  ratio {scrape / base:.2f}")
            alarms = best(lambda: list(NotifyCollector(registry.engine).collect()), args.rounds)
            rollouts = best(lambda: list(RolloutCollector(registry.engine).collect()), args.rounds)
            print(f"  of which the alarm gauges: {alarms * 1000:.1f} ms (ratio to the baseline {alarms / base:.2f}),")
            print(f"  the rollout gauges: {rollouts * 1000:.1f} ms (ratio {rollouts / base:.3f})")
            print(f"fleet read (all hubs, audited): {view * 1000:.0f} ms; ratio to the baseline {view / base:.2f}")

            hb = p.Heartbeat(
                version="1.2.0",
                uptime_s=1.0,
                disk_free_bytes=1 << 30,
                disk_total_bytes=32 << 30,
                store_bytes=1 << 20,
                lanes={lane: p.LaneHealth(100, 90, 10) for lane in p.LANES},  # type: ignore[misc]
            )
            sample = [rng.choice(ids) for _ in range(args.heartbeats)]
            upsert = db.upsert(registry.engine, db.hub_health, ["received_at", "version"])

            def bare() -> None:
                for who in sample:
                    with registry.engine.begin() as conn:
                        conn.execute(
                            upsert,
                            {
                                "hub_id": who.hub_id,
                                "household_id": who.household_id,
                                "received_at": time.time(),
                                "version": "1.2.0",
                                "uptime_s": 1.0,
                                "disk_free_bytes": 1,
                                "disk_total_bytes": 1,
                                "store_bytes": 1,
                                "drivers_down": 0,
                                "body": {},
                            },
                        )

            def recorded() -> None:
                for who in sample:
                    fleet.record_heartbeat(registry, who, hb)

            t_bare = best(bare, 3) / len(sample)
            t_hb = best(recorded, 3) / len(sample)
            print(
                f"heartbeat: {t_hb * 1e6:.0f} µs each ({1 / t_hb:.0f}/s on one thread); baseline (bare upsert): "
                f"{t_bare * 1e6:.0f} µs; ratio {t_hb / t_bare:.2f}"
            )
            per_s = args.hubs / 300
            share = per_s * t_hb
            print(f"  {args.hubs} hubs at one heartbeat per 5 min = {per_s:.0f}/s: {share:.1%} of one thread's time")
            print(f"(best of {args.rounds} rounds; on a shared machine these figures are measured under load)")
        finally:
            registry.close()


if __name__ == "__main__":
    main()
