"""``kotihub-register``: run the register and administer it (households, members, tokens, audit, retention).

Administrative commands work on the register's database directly (``--state``/``--db``), so they are for the
operator on the register host. Each change they make is audited as ``cli:<user>``. Secrets (tokens) are printed
once and never stored in the clear.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cloud_sync.register import export, retention, server
from cloud_sync.register.auth import ROLES
from cloud_sync.register.errors import RegisterError
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings


def _common(defaults: bool) -> argparse.ArgumentParser:
    # The same options before or after the subcommand; only the top level carries defaults.
    kw: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--state", type=Path, help="state directory (default /var/lib/kotihub-register)", **kw)
    ap.add_argument("--db", help="SQLAlchemy URL (default: SQLite in the state directory)", **kw)
    ap.add_argument("--retention-days", type=int, help="retention period in days (default 183)", **kw)
    ap.add_argument("--json", action="store_true", help="machine-readable output", **kw)
    return ap


def _parser() -> argparse.ArgumentParser:
    common = _common(False)
    ap = argparse.ArgumentParser(
        prog="kotihub-register", description=__doc__.splitlines()[0] if __doc__ else None, parents=[_common(True)]
    )
    ap.set_defaults(state=Path("/var/lib/kotihub-register"), db=None, retention_days=183, json=False)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the HTTPS register", parents=[common])
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--handshake-timeout", type=float, default=10.0, help="seconds to finish the TLS handshake")
    s.add_argument("--request-timeout", type=float, default=10.0, help="seconds to send a request head")
    s.add_argument("--max-per-source", type=int, default=256, help="open connections per client address")
    s.add_argument("--max-anonymous", type=int, default=2048, help="open connections without a client certificate")

    h = sub.add_parser("household", help="households").add_subparsers(dest="sub", required=True)
    h.add_parser("create", parents=[common]).add_argument("name")
    h.add_parser("list", parents=[common])
    h.add_parser("show", parents=[common]).add_argument("household")
    he = h.add_parser("erase", help="erase all data of a household", parents=[common])
    he.add_argument("household")
    he.add_argument("--yes", action="store_true", help="confirm the erasure")
    he.add_argument("--close", action="store_true", help="also end the service: revoke the hubs and API tokens")

    m = sub.add_parser("member", help="household members").add_subparsers(dest="sub", required=True)
    ma = m.add_parser("add", parents=[common])
    ma.add_argument("household")
    ma.add_argument("name")
    ma.add_argument("--recipient", required=True, help="the member's age X25519 public key (age1…)")

    hb = sub.add_parser("hub", help="enrolled hubs").add_subparsers(dest="sub", required=True)
    hb.add_parser("revoke", help="refuse this hub from now on", parents=[common]).add_argument("hub")

    e = sub.add_parser("enroll-token", help="a one-time enrollment token for a hub", parents=[common])
    e.add_argument("--household", required=True)
    e.add_argument("--ttl", type=int, default=600, help="seconds the token is valid (default 600)")

    t = sub.add_parser("api-token", help="a bearer token for the household app or an operator", parents=[common])
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--household")

    a = sub.add_parser("audit", help="show the audit log", parents=[common])
    a.add_argument("--household")
    a.add_argument("--limit", type=int, default=100)

    x = sub.add_parser("export", help="everything held about a household, as JSON lines", parents=[common])
    x.add_argument("household")
    x.add_argument("--out", type=Path, help="write to this file (0600) instead of stdout")

    sub.add_parser("retention", help="delete everything older than the retention period", parents=[common])
    return ap


def _print(obj: Any, as_json: bool) -> None:
    if as_json or not isinstance(obj, list | dict):
        print(json.dumps(obj, indent=2, default=str) if as_json else obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            print(f"{k}: {v}")
    else:
        for row in obj:
            print("  ".join(f"{k}={v}" for k, v in row.items()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(state_dir=args.state, db_url=args.db, retention_days=args.retention_days)
    if args.cmd == "serve":
        settings = dataclasses.replace(
            settings,
            tls_handshake_timeout_s=args.handshake_timeout,
            first_request_timeout_s=args.request_timeout,
            max_connections_per_source=args.max_per_source,
            max_anonymous_connections=args.max_anonymous,
        )
        server.serve(settings, host=args.host, port=args.port)
        return 0
    actor = f"cli:{getpass.getuser()}"
    reg = Registry(settings)
    try:
        out: Any
        if args.cmd == "household":
            if args.sub == "create":
                out = reg.create_household(args.name, actor=actor)
            elif args.sub == "list":
                out = reg.list_households()
            elif args.sub == "show":
                out = reg.household(args.household)
            else:
                if not args.yes:
                    print("refusing to erase without --yes", file=sys.stderr)
                    return 2
                out = retention.erase_household(reg, args.household, actor=actor, close=args.close)
        elif args.cmd == "member":
            member = reg.add_member(args.household, args.name, args.recipient, actor=actor)
            out = member.member_id
        elif args.cmd == "hub":
            reg.revoke_hub(args.hub, actor=actor)
            out = f"revoked {args.hub}"
        elif args.cmd == "enroll-token":
            out = reg.create_enroll_token(args.household, ttl_s=args.ttl, actor=actor)
        elif args.cmd == "api-token":
            out = reg.create_api_token(args.role, args.household, actor=actor)
        elif args.cmd == "export":
            lines = export.ndjson(export.export_household(reg, args.household, actor=actor))
            if args.out is None:
                for line in lines:
                    sys.stdout.buffer.write(line)
                sys.stdout.flush()
            else:
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.writelines(lines)
            return 0
        elif args.cmd == "audit":
            out = reg.audit_entries(args.household, limit=args.limit)
        else:
            out = retention.purge_expired(reg)
        _print(out, args.json)
        return 0
    except RegisterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        reg.close()


if __name__ == "__main__":
    sys.exit(main())
