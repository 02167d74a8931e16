"""``kotihub-register db upgrade|downgrade|current|history``: the register's schema, by hand.

These work on the database alone (``--db``/``--state``), without the CA or a running register, so an operator can
upgrade before starting new workers, or look at where a database stands.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cloud_sync.register import db, migrate
from cloud_sync.register.settings import Settings


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser("db", help="the register's database schema (migrations)")
    d_sub = d.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    up = d_sub.add_parser(
        "upgrade", help="create or upgrade the schema (the register also does at start)", parents=[common]
    )
    up.add_argument("revision", nargs="?", default="head", help="the revision to reach (default: head, the newest)")
    down = d_sub.add_parser(
        "downgrade", help="undo migrations down to a revision (before running an older release)", parents=[common]
    )
    down.add_argument("revision", help="the revision to go back to (see `db history`)")
    d_sub.add_parser("current", help="the revision the database is at", parents=[common])
    d_sub.add_parser("history", help="every revision this release knows, oldest first", parents=[common])


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.sub == "history":
        revs = migrate.history()
        if args.json:
            print(json.dumps([r.__dict__ for r in revs]))
        for r in revs if not args.json else ():
            print(f"{r.revision}  (after {r.down_revision or 'nothing'})  {r.message.splitlines()[0]}")
        return 0
    if settings.db_url is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = db.open_engine(settings.database_url, create=False)
    try:
        if args.sub == "upgrade":
            at: str | None = migrate.upgrade(engine, args.revision)
        elif args.sub == "downgrade":
            at = migrate.downgrade(engine, args.revision)
        else:
            at = migrate.current(engine)
    finally:
        engine.dispose()
    print(json.dumps({"revision": at, "head": migrate.head()}) if args.json else (at or "none"))
    return 0
