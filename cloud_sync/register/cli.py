"""``kotihub-register``: run the register and administer it (households, members, tokens, audit, retention).

Administrative commands work on the register's database directly (``--state``/``--db``), so they are for the
operator on the register host. Each change they make is audited as ``cli:<user>``. Secrets (tokens) are printed
once and never stored in the clear.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from cloud_sync import clitools
from cloud_sync.protocol import MemberRequest
from cloud_sync.register import dbcli, export, fleet, memberlog, migrate, release_cli, retention, server, workers
from cloud_sync.register.auth import ROLES
from cloud_sync.register.errors import Invalid, RegisterError
from cloud_sync.register.notify import alarms, contacts, desk
from cloud_sync.register.notify.policy import policy_json
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.webapp import cli as applink

TIME_KEYS = frozenset({"at", "erased_before", "last_seen", "expires"})
"""Keys (besides ``*_at``) whose values are Unix times; people read them as ISO 8601 UTC, ``--json`` keeps numbers."""


class Refused(Exception):
    """The command will not run as asked (exit status 2); the message says what to add."""


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
    """One sub-parser per command with ``set_defaults(func=_command)``; ``existing=True`` marks a command that works
    on what a register holds (reads, and changes to households), which refuses to run where there is no register
    rather than set one up with a new CA key. A new command is a function
    below and a few lines here, every option with its help text (``tests/unit/test_cli_text.py`` checks that)."""
    common = _common(False)
    ap = argparse.ArgumentParser(
        prog="kotihub-register",
        description="the kotihub register: run it and administer it (households, members, tokens, audit, retention)",
        parents=[_common(True)],
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {clitools.version()}")
    ap.set_defaults(state=Path("/var/lib/kotihub-register"), db=None, retention_days=183, json=False, existing=False)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the HTTPS register", parents=[common])
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="the name or address to listen on and name in the server certificate (default 127.0.0.1)",
    )
    s.add_argument("--port", type=int, default=8443, help="TCP port (default 8443)")
    s.add_argument("--handshake-timeout", type=float, default=10.0, help="seconds to finish the TLS handshake")
    s.add_argument("--request-timeout", type=float, default=10.0, help="seconds to send a request head")
    s.add_argument("--max-per-source", type=int, default=256, help="open connections per client address")
    s.add_argument("--max-anonymous", type=int, default=2048, help="open connections without a client certificate")
    s.add_argument("--workers", type=int, default=1, help="register processes on the port (PostgreSQL only; default 1)")
    s.add_argument(
        "--bulk-ingest",
        type=int,
        default=Settings.bulk_ingest_limit,
        help=f"bulk ingest batches each process runs in PostgreSQL at once (default {Settings.bulk_ingest_limit})",
    )
    s.add_argument(
        "--alarm-port",
        type=int,
        help="serve the alarm lane alone on this port, in a process of its own, and announce it to hubs "
        "(PostgreSQL only; default: alarms go to --port)",
    )
    s.add_argument(
        "--bulk-nice",
        type=int,
        default=10,
        help="with --alarm-port: how much the other register processes lower their CPU priority (0-19; default 10)",
    )
    s.add_argument(
        "--alarm-keep-alive",
        type=float,
        default=180.0,
        help="seconds a hub's idle alarm connection is kept open between its pings (default 180)",
    )
    s.add_argument(
        "--command-poll", type=float, default=2.0, help="seconds between a long-poll's re-reads of the database"
    )
    s.add_argument(
        "--readings-chunks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store a sensor's many readings in one batch (a hub catching up) as a packed chunk (PostgreSQL;"
        " docs/scale.md; default on); a release from before 0012 must not run on the database after",
    )
    s.add_argument("--db-pool", type=int, default=12, help="PostgreSQL connections kept per process (default 12)")
    s.add_argument(
        "--db-overflow", type=int, default=4, help="extra PostgreSQL connections per process under load (default 4)"
    )
    s.set_defaults(func=None)

    h = sub.add_parser("household", help="households").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    hc = h.add_parser("create", help="a new household; prints its id", parents=[common])
    hc.add_argument("name", help="a name for people (e.g. the family name)")
    hc.set_defaults(func=_household_create)
    h.add_parser("list", help="every household", parents=[common]).set_defaults(func=_household_list, existing=True)
    hs = h.add_parser("show", help="one household with its hubs and members", parents=[common])
    hs.add_argument("household", help="the household id (hh_…)")
    hs.set_defaults(func=_household_show, existing=True)
    he = h.add_parser("erase", help="erase all data of a household", parents=[common])
    he.add_argument("household", help="the household id (hh_…)")
    he.add_argument("--yes", action="store_true", help="confirm the erasure")
    he.add_argument("--close", action="store_true", help="also end the service: revoke the hubs and API tokens")
    he.set_defaults(func=_household_erase, existing=True)

    m = sub.add_parser("member", help="household members").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    # No "add": only a member's signature changes who clips are encrypted to (docs/members.md).
    mr = m.add_parser("request", help="propose a member; a member must sign it to take effect", parents=[common])
    mr.add_argument("household", help="the household id (hh_…)")
    mr.add_argument("member_id", help="an id for the proposed member (letters, digits, - and _)")
    mr.add_argument("--recipient", required=True, help="the member's age X25519 public key (age1…)")
    mr.add_argument("--ed25519", required=True, help="the member's Ed25519 signing key (hex)")
    mr.add_argument("--note", default="", help="why (shown to the household)")
    mr.set_defaults(func=_member_request, existing=True)
    ml = m.add_parser("log", help="the household's signed member list versions", parents=[common])
    ml.add_argument("household", help="the household id (hh_…)")
    ml.set_defaults(func=_member_log, existing=True)

    hb = sub.add_parser("hub", help="enrolled hubs").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    hr = hb.add_parser("revoke", help="refuse this hub from now on", parents=[common])
    hr.add_argument("hub", help="the hub id (hub_…)")
    hr.set_defaults(func=_hub_revoke, existing=True)

    e = sub.add_parser("enroll-token", help="a one-time enrollment token for a hub", parents=[common])
    e.add_argument("--household", required=True, help="the household the hub will belong to")
    e.add_argument("--ttl", type=int, default=600, help="seconds the token is valid (default 600)")
    e.set_defaults(func=_enroll_token, existing=True)

    t = sub.add_parser("api-token", help="a bearer token for the household app or an operator", parents=[common])
    t.add_argument("--role", required=True, choices=ROLES, help="who uses it: " + ", ".join(ROLES))
    t.add_argument("--household", help="the household a `household` token reaches")
    t.set_defaults(func=_api_token)

    a = sub.add_parser("audit", help="show the audit log", parents=[common])
    a.add_argument("--household", help="only this household's entries")
    a.add_argument("--limit", type=int, default=100, help="at most this many entries, newest first (default 100)")
    a.set_defaults(func=_audit, existing=True)

    x = sub.add_parser("export", help="everything held about a household, as JSON lines", parents=[common])
    x.add_argument("household", help="the household id (hh_…)")
    x.add_argument("--out", type=Path, help="write to this file (0600) instead of stdout")
    x.set_defaults(func=_export, existing=True)

    r = sub.add_parser("retention", help="delete everything older than the retention period", parents=[common])
    r.set_defaults(func=_retention)

    al = sub.add_parser("alarms", help="the operator's alarm desk")
    al_sub = al.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    for view, what in (
        ("desk", "alarms unacknowledged past their policy (support, admin)"),
        ("open", "every unacknowledged alarm (admin)"),
        ("history", "a household's alarms and who was told (admin)"),
    ):
        v = al_sub.add_parser(view, help=what, parents=[common])
        v.add_argument("--role", choices=("support", "admin"), default="support", help="your operator role")
        v.add_argument("--household", required=view == "history", help="only this household's alarms")
        v.add_argument("--limit", type=int, default=100, help="at most this many alarms (default 100)")
        v.set_defaults(func=_notify, existing=True)
    ak = al_sub.add_parser("ack", help="acknowledge for the household (after reaching them)", parents=[common])
    ak.add_argument("household", help="the household id (hh_…)")
    ak.add_argument("alarm", help="the alarm id, as the desk shows it")
    ak.set_defaults(func=_notify, existing=True)

    c = sub.add_parser("contact", help="members' contacts for notifications")
    c_sub = c.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    cl = c_sub.add_parser("list", help="a household's contacts", parents=[common])
    cl.add_argument("household", help="the household id (hh_…)")
    cl.set_defaults(func=_notify, existing=True)
    cs = c_sub.add_parser("set", help="set a member's contact", parents=[common])
    cs.add_argument("household", help="the household id (hh_…)")
    cs.add_argument("member", help="the member id")
    cs.add_argument("--phone", default="", help="E.164, e.g. +358401234567")
    cs.add_argument("--email", default="", help="an e-mail address")
    cs.add_argument("--language", choices=("fi", "en"), default="fi", help="the language of messages (default fi)")
    cs.add_argument("--order", type=int, default=0, help="place in the call order (lower first)")
    cs.set_defaults(func=_notify, existing=True)

    po = sub.add_parser("policy", help="a household's escalation policy")
    po_sub = po.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    pw = po_sub.add_parser("show", help="the policy in force", parents=[common])
    pw.add_argument("household", help="the household id (hh_…)")
    pw.set_defaults(func=_notify, existing=True)
    ps = po_sub.add_parser("set", help="from a JSON file (fields left out keep their defaults)", parents=[common])
    ps.add_argument("household", help="the household id (hh_…)")
    ps.add_argument("file", type=Path, help="the policy as JSON (docs/notifications.md)")
    ps.set_defaults(func=_notify, existing=True)

    applink.add_parser(sub, common)

    f = sub.add_parser("fleet", help="every hub at a glance: online, version, lag, disk, drivers", parents=[common])
    f.add_argument(
        "--online-minutes",
        type=fleet.online_minutes,
        default=fleet.ONLINE_WINDOW_S / 60,
        help="'online' means heard from within this many minutes (0-10080, default 15)",
    )
    f.set_defaults(func=_fleet, existing=True)
    dbcli.add_parser(sub, common)
    release_cli.add_parser(sub, common)
    release_cli.add_config_parser(sub, common)
    return ap


# One function per command: (arguments, registry, actor) -> what to print (None: it printed itself).


def _household_create(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.create_household(args.name, actor=actor)


def _household_list(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.list_households()


def _household_show(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.household(args.household)


def _household_erase(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    if not args.yes:
        raise Refused("refusing to erase without --yes")
    return retention.erase_household(reg, args.household, actor=actor, close=args.close)


def _member_request(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    req = msgspec.convert(
        {"member_id": args.member_id, "recipient": args.recipient, "ed25519": args.ed25519, "note": args.note},
        MemberRequest,
    )
    return memberlog.file_request(reg, args.household, req, actor=actor).id


def _member_log(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    reg.audit(actor, "member_log.read", args.household)
    return [
        {"version": e.version, "digest": e.digest, "signer": e.signed.signer}
        for e in memberlog.entries(reg, args.household, limit=memberlog.MAX_PAGE)
    ]


def _hub_revoke(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    reg.revoke_hub(args.hub, actor=actor)
    return f"revoked {args.hub}"


def _enroll_token(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.create_enroll_token(args.household, ttl_s=args.ttl, actor=actor)


def _api_token(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.create_api_token(args.role, args.household, actor=actor)


def _audit(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return reg.audit_entries(args.household, limit=args.limit)


def _export(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    lines = export.ndjson(export.export_household(reg, args.household, actor=actor))
    if args.out is None:
        for line in lines:
            sys.stdout.buffer.write(line)
    else:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.writelines(lines)
    return None


def _fleet(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    rows = fleet.fleet(reg, actor=actor, online_window_s=args.online_minutes * 60)
    return rows if args.json else fleet.table(rows)


def _retention(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    return retention.purge_expired(reg)


def _readable(key: str, value: Any) -> Any:
    """Unix times as ISO 8601 UTC (0 means never), nested tables as ``key=value`` pairs."""
    if isinstance(value, int | float) and not isinstance(value, bool) and (key in TIME_KEYS or key.endswith("_at")):
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_readable(k, v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(str(_readable(key, v)) for v in value) + "]"
    return value


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            print(f"{k}: {_readable(k, v)}")
    elif isinstance(obj, list):
        for row in obj:
            print("  ".join(f"{k}={_readable(k, v)}" for k, v in row.items()))
    else:
        print(obj)


def _notify(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    """The alarm desk, contacts and escalation policies (cloud_sync/register/notify)."""
    if args.cmd == "alarms":
        if args.sub == "ack":
            with reg.engine.begin() as conn:
                return alarms.acknowledge(conn, args.household, args.alarm, actor=actor, channel="desk")
        return desk.read(reg, args.sub, role=args.role, actor=actor, household_id=args.household, limit=args.limit)
    if args.cmd == "contact":
        if args.sub == "list":
            return [msgspec.to_builtins(c) for c in contacts.contacts(reg, args.household)]
        try:
            contact = contacts.Contact(
                phone=args.phone, email=args.email, language=args.language, call_order=args.order
            )
            contact = msgspec.convert(msgspec.to_builtins(contact), contacts.Contact)
        except msgspec.ValidationError as exc:
            raise Invalid(f"invalid contact: {exc}") from exc
        contacts.set_contact(reg, args.household, args.member, contact, actor=actor)
        return f"contact of {args.member} stored"
    if args.sub == "show":
        return policy_json(contacts.get_policy(reg, args.household))
    try:
        raw = json.loads(args.file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Invalid(f"cannot read the policy file: {exc}") from exc
    return policy_json(contacts.set_policy(reg, args.household, raw, actor=actor))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = dataclasses.replace(
        settings,
        tls_handshake_timeout_s=args.handshake_timeout,
        first_request_timeout_s=args.request_timeout,
        max_connections_per_source=args.max_per_source,
        max_anonymous_connections=args.max_anonymous,
        command_poll_interval_s=args.command_poll,
        db_pool_size=args.db_pool,
        db_max_overflow=args.db_overflow,
        alarm_port=args.alarm_port,
        bulk_ingest_limit=args.bulk_ingest,
        bulk_nice=args.bulk_nice,
        alarm_keep_alive_s=args.alarm_keep_alive,
        readings_chunks=args.readings_chunks,
    )
    if args.workers != 1 or args.alarm_port is not None:
        return workers.serve(settings, workers=args.workers, host=args.host, port=args.port)
    server.serve(settings, host=args.host, port=args.port)
    return 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(state_dir=args.state, db_url=args.db, retention_days=args.retention_days)
    if args.cmd in ("serve", "db"):
        try:
            return _serve(args, settings) if args.cmd == "serve" else dbcli.run(args, settings)
        except (workers.WorkersRefused, migrate.SchemaError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.existing and not (settings.state_dir / "ca.key").exists():
        # Not a new register (a new CA key, an empty database) where the operator mistyped --state.
        print(f"error: no register in {settings.state_dir} (no ca.key there); check --state", file=sys.stderr)
        return 1
    reg = Registry(settings)
    try:
        out = args.func(args, reg, f"cli:{getpass.getuser()}")
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except msgspec.ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RegisterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        reg.close()
    if out is not None:
        _print(out, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    return clitools.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
