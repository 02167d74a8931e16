"""Make the committed dumps of a register database as the release before migrations (commit 15f63d6) left it.

Run once from the repository (it needs that commit in git and PostgreSQL 15 installed); the upgrade tests load the
dumps (tests/integration/test_register_migrations.py)::

    .venv/bin/python scripts/make_legacy_register_dumps.py

The previous release's own code makes the schema (its ``open_engine``, i.e. ``create_all``) and the rows (its
tables), so the dumps are what such a register holds, not what we think it held.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import PG_BIN, start_cluster

RELEASE = "15f63d6"
OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "register_15f63d6"

# Runs with the old release's code on sys.path. Fixed ids and times, so the dumps are stable.
POPULATE = """
import sys
from sqlalchemy import insert
from cloud_sync.register import db
from cloud_sync.register.notify import schema as n

engine = db.open_engine(sys.argv[1])
T = 1_750_000_000.0
with engine.begin() as c:
    c.execute(insert(db.households).values(id="hh_legacy", name="Virtanen", created_at=T))
    c.execute(insert(db.consents).values(household_id="hh_legacy", marketing=False, marketing_ban=False, updated_at=T))
    c.execute(insert(db.members).values(id="m_aino", household_id="hh_legacy", name="Aino", email="aino@example.fi",
                                        phone="+358401234567", created_at=T))
    c.execute(insert(db.member_keys).values(member_id="m_aino", household_id="hh_legacy",
                                            recipient="age1legacyrecipient", created_at=T))
    c.execute(insert(db.hubs).values(id="hub_legacy", household_id="hh_legacy", name="olohuone", cert_sha256="ab" * 32,
                                     enrolled_at=T, last_seen=T + 60, revoked=False))
    c.execute(insert(db.readings), [
        {"hub_id": "hub_legacy", "seq": i, "household_id": "hh_legacy", "device_id": "t1", "quantity": "temperature",
         "value": 20.0 + i / 10, "ts": T + i, "received_at": T + i + 1}
        for i in range(50)
    ])
    c.execute(insert(db.events).values(hub_id="hub_legacy", lane="alarm", seq=0, household_id="hh_legacy",
                                       device_id="smoke1", kind="smoke", state="alarm", attrs={"battery": 90},
                                       ts=T + 5, received_at=T + 6))
    c.execute(insert(db.commands).values(id="cmd_legacy", household_id="hh_legacy", hub_id="hub_legacy", kind="ping",
                                         args={}, issued_at=T, issued_by="cli:root", status="done", detail={"ok": True},
                                         delivered_at=T + 1, completed_at=T + 2))
    c.execute(insert(db.audit).values(at=T, actor="cli:root", household_id="hh_legacy", action="household.create",
                                      target="", detail=""))
    c.execute(insert(n.contacts).values(member_id="m_aino", household_id="hh_legacy", phone="+358401234567",
                                        email="aino@example.fi", language="fi", call_order=0, updated_at=T))
    c.execute(insert(n.alarms).values(id="hub_legacy/alarm/0", household_id="hh_legacy", hub_id="hub_legacy",
                                      device_id="smoke1", category="smoke", urgent=True, place="keittiö",
                                      raised_at=T + 5, received_at=T + 6, late=False))
engine.dispose()
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", RELEASE, "cloud_sync"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(old)}

        lite = Path(tmp) / "register.db"
        subprocess.run([sys.executable, "-c", POPULATE, f"sqlite:///{lite}"], check=True, env=env, cwd=tmp)
        with sqlite3.connect(lite) as conn:
            (OUT / "sqlite.sql").write_text("\n".join(conn.iterdump()) + "\n")

        cluster = start_cluster()
        try:
            name = cluster.create_database()
            subprocess.run([sys.executable, "-c", POPULATE, cluster.url(name)], check=True, env=env, cwd=tmp)
            dump = subprocess.run(
                [
                    "runuser", "-u", "postgres", "--",
                    str(PG_BIN / "pg_dump"), "--no-owner", "--no-privileges", "--inserts",
                    "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", name,
                ],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            # psql meta-commands (\restrict) are not SQL; the tests run the dump through psycopg.
            sql = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))
            (OUT / "postgresql.sql").write_text(sql)
        finally:
            cluster.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
