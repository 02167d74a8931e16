"""The ``kotihub`` command: the daemon, the demo, and the technician's and household's tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cloud_sync import clitools
from gateway import config as configuration
from gateway import control_api as api
from gateway import humanize, i18n
from gateway.control import ControlError, DaemonUnreachable, call
from gateway.errors import ConfigError, KotihubError
from gateway.model import Category
from household import cli as member_cli

EXIT_UNREACHABLE = 2


def _load_config(args: argparse.Namespace) -> configuration.Config:
    return configuration.load(args.config)


def _socket(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    return _load_config(args).socket_path


def _ask(args: argparse.Namespace, cmd: str, payload: api.Args | None = None, timeout: float = 60.0) -> Any:
    return call(_socket(args), cmd, payload, timeout=timeout)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, result: Any, human: str) -> None:
    print(json.dumps(result, indent=2, default=str) if args.json else human)


def _run(args: argparse.Namespace) -> int:
    from gateway.daemon import Daemon

    cfg = _load_config(args)
    logging.basicConfig(
        level=cfg.hub.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    asyncio.run(Daemon(cfg).run())
    return 0


def _status(args: argparse.Namespace) -> int:
    s = _ask(args, "status")
    _emit(args, s, _status_text(s))
    return 0


def _status_text(s: dict[str, Any]) -> str:
    depth = s["store"]["depth"]
    lines = [
        f"hub {s['hub']['name']}: up {s['uptime_s'] / 3600:.1f} h",
        f"devices: {s['devices']['online']} online, {s['devices']['offline']} offline, {s['devices']['known']} known",
        "store: "
        + ", ".join(f"{lane} {n}" for lane, n in depth.items())
        + f" waiting to sync; {s['store']['dead_letters']} dead letters; "
        + f"{humanize.size(s['store']['db_bytes'])} used, {humanize.size(s['store']['free_bytes'])} free",
        f"retention: {s['retention']['days']} days (horizon {humanize.when(s['retention']['horizon'])})",
        f"restricted: {', '.join(s['restricted']) or 'nothing'}",
        _members_line(s.get("members", {})),
        "drivers:",
    ]
    for name, d in s["drivers"].items():
        error = f", last error: {d['last_error']}" if d.get("last_error") else ""
        malformed = d.get("counters", {}).get("malformed", 0)
        lines.append(f"  {name}: {d['state']}, {d['restarts']} restarts, {malformed} malformed{error}")
    troubled = {name: t for name, t in s.get("tasks", {}).items() if t["restarts"] or t["state"] != "running"}
    if troubled:
        lines.append("tasks restarted:")
        for name, t in troubled.items():
            lines.append(f"  {name}: {t['state']}, {t['restarts']} restarts, {t['hangs']} hangs, {t['last_error']}")
    if "uplink" in s:
        for lane, u in s["uplink"].get("lanes", {}).items():
            lines.append(
                f"  sync {lane}: last ok {humanize.when(u.get('last_success'))}, "
                f"last error {u.get('last_error') or '-'}"
            )
        replies = s["uplink"].get("replies", {})
        if replies.get("bad_replies"):
            lines.append(
                f"  register replies of the wrong shape: {replies['bad_replies']}, "
                f"last {humanize.when(replies.get('last_bad_at'))}: {replies.get('last_bad_reply')}"
            )
    return "\n".join(lines)


def _members_line(m: dict[str, Any]) -> str:
    if not m.get("pinned"):
        return "members: not paired with the household (kotihub provision --pairing-code): no clip is encrypted"
    refused = ", ".join(f"{k} {v}" for k, v in sorted(m.get("refused", {}).items()))
    erased = " (erased: waiting for a newly signed list)" if m.get("erased") else ""
    return f"members: signed list version {m['version']}, {m['recipients']} clip recipients{erased}" + (
        f"; refused lists: {refused} (last: {m['last_refusal']})" if refused else ""
    )


def _devices(args: argparse.Namespace) -> int:
    devices = _ask(args, "devices")
    rows = [
        [
            d["device_id"],
            d["kind"],
            d["name"] or "-",
            d["room"] or "-",
            "online" if d["online"] else "OFFLINE",
            "-" if d["battery"] is None else f"{d['battery']:.0f}%",
            humanize.when(d["last_seen"]),
        ]
        for d in devices
    ]
    _emit(args, devices, _table(rows, ["device", "kind", "name", "room", "state", "battery", "last seen"]))
    return 0


def _discover(args: argparse.Namespace) -> int:
    found = _ask(args, "discover", api.DiscoverArgs(timeout=args.timeout), timeout=args.timeout + 30)
    rows = [
        [
            f.get("device_id", "-"),
            f.get("driver", "-"),
            f.get("kind", f.get("error", "-")),
            f.get("model") or "-",
            f.get("address") or "-",
            "-" if f.get("rssi") is None else f"{f['rssi']:.0f} dBm",
            "known" if f.get("known") else "NEW",
        ]
        for f in found
    ]
    _emit(args, found, _table(rows, ["device", "driver", "kind", "model", "address", "signal", ""]))
    return 0


def _adopt(args: argparse.Namespace) -> int:
    result = _ask(args, "adopt", api.AdoptArgs(device_id=args.device, actor="cli"))
    _emit(args, result, f"{result['device_id']} " + ("adopted" if result["new"] else "was already adopted"))
    return 0


def _restrict(args: argparse.Namespace) -> int:
    result = _ask(
        args, "restrict", api.RestrictArgs(category=Category(args.category), on=args.state == "on", actor="cli")
    )
    _emit(args, result, "restricted now: " + (", ".join(result) or "nothing"))
    return 0


def _rename(args: argparse.Namespace) -> int:
    result = _ask(args, "rename", api.RenameArgs(device_id=args.device, name=args.name, room=args.room, actor="cli"))
    _emit(args, result, f"{result['device_id']}: name {result['name']!r}, room {result['room']!r}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    s = _ask(args, "sync", api.SyncArgs(now=args.now))
    rows = [
        [
            lane,
            str(s["depth"].get(lane, 0)),
            humanize.when(u["last_success"]),
            (u["last_error"] or "-")[:60],
            humanize.when(u["next_retry"]),
            str(u["dead_lettered"]),
            f"{u['batch_items']:,}",
        ]
        for lane, u in s["lanes"].items()
    ]
    alarms = f"alarms to the register's alarm listener {s['alarm_url']}\n" if s.get("alarm_url") else ""
    if (conn := s.get("alarm_connection")) is not None:
        ping = f", last ping {conn['ping_ms']:.0f} ms" if conn.get("ping_ms") is not None else ""
        state = "kept open" if conn["kept_open"] else "not open"
        alarms += f"alarm connection {state} ({conn['pings']} pings, {conn['ping_failures']} failed{ping})\n"
    if s.get("watched_s"):
        alarms += f"the household's app is open: readings go at once for {s['watched_s']:.0f} s more\n"
    human = f"register {s['register']}\n{alarms}" + _table(
        rows, ["lane", "waiting", "last success", "last error", "next retry", "dead letters", "batch"]
    )
    _emit(args, s, human)
    return 0


def _provision(args: argparse.Namespace) -> int:
    from cloud_sync import memberlist as ml
    from cloud_sync.enroll import EnrollError, enroll, pin_household

    cfg = _load_config(args)
    state = cfg.state_path
    print(f"provisioning this hub with {args.register}: a private key is made here and never leaves {state};")
    print("the register signs a certificate for it. The household's member list is taken only if it is signed by")
    print("the member whose pairing code you confirm (shown by `kotihub member show` on the member's own device).")
    code = args.pairing_code
    if code is None and not sys.stdin.isatty():
        print("kotihub: give --pairing-code (from the member's device) or run interactively", file=sys.stderr)
        return 1
    try:
        result = enroll(args.register, args.token, state, ca_file=args.ca_file, force=args.force, pairing_code=code)
        if code is None:
            code = _confirm_code(result.member_log)
            if code is None:
                print("kotihub: not confirmed: the hub is enrolled but will encrypt no clip", file=sys.stderr)
                print("run `kotihub provision --force --pairing-code CODE` with a new token", file=sys.stderr)
                return 1
            pin_household(state, code, result.member_log)
    except EnrollError as exc:
        print(f"kotihub: provisioning failed: {exc}", file=sys.stderr)
        return 1
    print(f"hub {result.hub_id} enrolled in household {result.household_id}; pairing code {ml.normalise_code(code)}")
    print("set [uplink] enabled = true and register_url in the config, then restart kotihub")
    return 0


def _confirm_code(member_log: list[Any]) -> str | None:
    """Shows the pairing code of the member who signed the register's first version and asks to confirm it."""
    from cloud_sync import memberlist as ml

    if not member_log:
        typed = input("the household has no member list yet; type the pairing code from the member's device: ")
        return ml.normalise_code(typed) if typed.strip() else None
    body, _ = ml.open_signed(member_log[0])
    signer = next((m for m in body.members if m.id == member_log[0].signer), None)
    if signer is None:
        return None
    code = ml.pairing_code(signer.ed25519)
    answer = input(f"does the member's device show the pairing code {code}? [y/N] ")
    return code if answer.strip().lower() in ("y", "yes", "k", "kyllä") else None


def _follow(args: argparse.Namespace, job_id: str, label: str) -> dict[str, Any]:
    """Polls a daemon job until it ends, drawing a progress bar for people (nothing for --json or a pipe)."""
    show = not args.json and sys.stderr.isatty()
    while True:
        job: dict[str, Any] = _ask(args, "job", api.JobArgs(id=job_id))
        if show:
            total = max(job["total"], 1)
            filled = min(30, int(30 * job["done"] / total))
            print(
                f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {job['done']}/{job['total']}", end="", file=sys.stderr
            )
        if job["finished"]:
            if show:
                print(file=sys.stderr)
            if job["error"]:
                raise ControlError(f"{label} failed: {job['error']}")
            return job
        time.sleep(0.2)


def _retention(args: argparse.Namespace) -> int:
    if args.run:
        started = _ask(args, "retention", api.RetentionArgs(run=True, force=args.force))
        job = _follow(args, started["job"], "retention")
        r = job["result"]
        human = (
            f"retention is waiting: {r['waiting']}"
            if r.get("waiting")
            else f"destroyed {r['epochs_shredded']} day(s): {r['frames_deleted']} reading frames, "
            f"{r['items_deleted']} events, {r['clip_files_deleted']} clips; "
            f"longest pause {r['longest_batch_ms']:.0f} ms"
        )
        _emit(args, r, human)
        return 0 if not r.get("waiting") else 3
    s = _ask(args, "retention")
    _emit(args, s, _retention_text(s))
    return 0


def _retention_text(s: dict[str, Any]) -> str:
    """The clock as it is now, and what the last run did then: a run that waited for the clock before it was
    confirmed must not read as if the confirmed clock were still waiting."""
    trusted = bool(s.get("clock_trusted"))
    clock = f"trusted ({s['clock']})" if trusted else f"not trusted yet: {s['clock']}"
    last = f"last run: {humanize.when(s['last_run'])}"
    if s["waiting"]:
        last += (
            f" (it waited: {s['waiting']}; the clock is trusted now, so the next run goes ahead)"
            if trusted
            else " (waiting for a trusted clock)"
        )
    due = s["due"]
    return "\n".join(
        [
            f"retention period: {s['days']} days; clock: {clock}",
            last,
            f"due now: {due['days']} day(s), {due['readings']} readings, {due['items']} events and clips",
        ]
    )


def _erase(args: argparse.Namespace) -> int:
    scope: Literal["all", "device", "category"]
    if args.all:
        scope, target, what = "all", "", "ALL data on this hub"
    elif args.device:
        scope, target, what = "device", args.device, f"all data of device {args.device}"
    else:
        scope, target, what = "category", args.category, f"all {args.category} data"
    if not args.yes:
        if not sys.stdin.isatty():
            print("kotihub: erasure needs --yes when not run interactively", file=sys.stderr)
            return 1
        answer = input(f"This destroys {what}, here and (when synced) in the register. Type ERASE to confirm: ")
        if answer.strip() != "ERASE":
            print("nothing erased")
            return 1
    started = _ask(args, "erase", api.EraseArgs(scope=scope, target=target, confirm=True, actor="cli"))
    receipt = _follow(args, started["job"], "erasing")["result"]
    r = receipt["receipt"]
    human = (
        f"erased {what} at {humanize.when(r['completed_at'])}: {humanize.counts(r['erased'])}\n"
        f"receipt {r['receipt_id']}"
    )
    if r["receipt_id"] in _ask(args, "receipts")["waiting_for_register"]:
        human += "\nthe register erases its copy when the hub next reaches it (see: kotihub receipt list)"
    _emit(args, receipt, human)
    return 0


def _receipt_list(args: argparse.Namespace) -> int:
    out = _ask(args, "receipts")
    rows = []
    for signed in out["receipts"]:
        r = signed["receipt"]
        if "register" in r or "register_receipt" in signed:
            register = "erased"
        elif r["receipt_id"] in out["waiting_for_register"]:
            register = "waiting"
        else:
            register = signed.get("register_error", "-")
        rows.append([r["receipt_id"], humanize.when(r["completed_at"]), f"{r['scope']}:{r['target']}", register])
    _emit(args, out, _table(rows, ["receipt", "completed", "what", "register"]) if rows else "no erasures yet")
    return 0


def _receipt_verify(args: argparse.Namespace) -> int:
    """Checks a receipt offline: a member needs only the file and the register's CA certificate."""
    from cloud_sync.receipts import ReceiptInvalid, verify

    ca_path: Path | None = args.ca
    if ca_path is None:
        default = _load_config(args).state_path / "register-ca.crt"
        ca_path = default if default.exists() else None
    signed = json.loads(args.file.read_text())
    try:
        found = verify(signed, ca_path.read_bytes() if ca_path is not None else None)
    except ReceiptInvalid as exc:
        print(f"kotihub: the receipt does NOT verify: {exc}", file=sys.stderr)
        return 1
    signers = [found.signer, *found.embedded]
    _emit(args, {"valid": True, "signers": signers}, "valid receipt, signed by " + " and ".join(signers))
    return 0


def _export(args: argparse.Namespace) -> int:
    import shutil

    started = _ask(args, "export", api.ExportArgs(actor="cli"))
    result = _follow(args, started["job"], "exporting")["result"]
    source = Path(result["path"])
    shutil.copyfile(source, args.out)
    args.out.chmod(0o600)
    source.unlink()
    _emit(args, {**result, "path": str(args.out)}, f"export written to {args.out}: {humanize.counts(result['counts'])}")
    return 0


def _selftest(args: argparse.Namespace) -> int:
    lang = i18n.choose_language(args.lang)
    marks = {
        "ok": i18n.text("status.ok", lang),
        "warn": i18n.text("status.warn", lang),
        "fail": i18n.text("status.fail", lang),
    }
    try:
        checks: list[dict[str, Any]] = _ask(args, "selftest", api.SelftestArgs(alarm_test=args.alarm_test), timeout=60)
    except DaemonUnreachable:
        checks = [
            {"check": "daemon", "status": "fail", "message": "daemon.down", "advice": "daemon.down.fix", "params": {}}
        ]
    for c in checks:
        c["text"] = i18n.text(c["message"], lang, **c["params"])
        c["advice_text"] = i18n.text(c["advice"], lang, **c["params"]) if c["advice"] else None
    width = max(len(m) for m in marks.values())
    lines = [i18n.text("selftest.title", lang), ""]
    for c in checks:
        lines.append(f"  {marks[c['status']]:<{width}}  {c['text']}")
        if c["advice_text"]:
            lines.append(f"  {'':<{width}}  → {c['advice_text']}")
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("ok", "warn", "fail")}
    lines += ["", i18n.text("selftest.summary", lang, **counts)]
    _emit(args, checks, "\n".join(lines))
    return 1 if counts["fail"] else 0


def _diag(args: argparse.Namespace) -> int:
    import zipfile

    bundle = _ask(args, "diag")
    with zipfile.ZipFile(args.out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bundle.json", json.dumps({k: v for k, v in bundle.items() if k != "logs"}, indent=2, default=str))
        zf.writestr("logs.txt", "\n".join(bundle["logs"]) + "\n")
    args.out.chmod(0o600)
    print(f"support bundle written to {args.out} (personal data redacted)")
    return 0


def _clip_decrypt(args: argparse.Namespace) -> int:
    """What the household's phone app does: decrypt a clip with a member's own age identity."""
    from gateway.store.clips import decrypt_clip, decrypt_clip_named

    if args.out is None:
        out, size, media_type = decrypt_clip_named(args.identity, args.clip)
    else:
        out, size, media_type = args.out, decrypt_clip(args.identity, args.clip, args.out), "the given file"
    print(f"decrypted {args.clip.name}: {size} bytes ({media_type}) in {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kotihub_tools.demo import run_demo

    return run_demo(duration=args.duration, with_register=not args.no_register)


def _config_check(args: argparse.Namespace) -> int:
    try:
        raw = configuration.read(args.file)
        notes = configuration.obsolete_keys(raw)
        configuration.parse(raw)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for key, reason in exc.problems:
            print(f"  {key}: {reason}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    for key, advice in notes:
        print(f"  note: {key}: {advice}")
    return 0


def _update_status(args: argparse.Namespace) -> int:
    from updater import cli as updater_cli  # the updater's own package; read-only here
    from updater import config as updater_config

    cfg = updater_config.load(args.updater_config or updater_config.DEFAULT_PATH)
    s = updater_cli.status(cfg)
    _emit(args, s, updater_cli.status_text(s))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """One sub-parser per command, each with ``set_defaults(func=_command)``: a new command is a function above and
    a few lines here, every option with its help text (``tests/unit/test_cli_text.py`` checks that)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help="configuration file (default: embedded defaults)")
    common.add_argument("--socket", default="", help="control socket (default: from the configuration)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="kotihub", description="kotihub home hub")
    parser.add_argument("--version", action="version", version=f"%(prog)s {clitools.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the daemon").set_defaults(func=_run)
    demo = sub.add_parser("demo", help="hub, register and simulated devices on this machine, no hardware")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    demo.add_argument("--no-register", action="store_true", help="do not start a local register")
    demo.set_defaults(func=_demo)
    sub.add_parser("status", parents=[common], help="the daemon's health at a glance").set_defaults(func=_status)
    sub.add_parser("devices", parents=[common], help="known devices").set_defaults(func=_devices)
    discover = sub.add_parser("discover", parents=[common], help="look for devices now, known or not")
    discover.add_argument("--timeout", type=float, default=5.0, help="seconds each driver looks (default 5)")
    discover.set_defaults(func=_discover)
    categories = [c.value for c in Category]
    adopt = sub.add_parser("adopt", parents=[common], help="record a radio device found by discover as the household's")
    adopt.add_argument("device", help="its id from discover, e.g. ble:a4:c1:38:02:83:f4")
    adopt.set_defaults(func=_adopt)
    restrict = sub.add_parser("restrict", parents=[common], help="restrict processing of a category")
    restrict.add_argument("category", choices=categories, help="what to restrict: " + ", ".join(categories))
    restrict.add_argument("state", choices=["on", "off"], help="on: stop collecting and syncing it; off: resume")
    restrict.set_defaults(func=_restrict)
    rename = sub.add_parser("rename", parents=[common], help="correct a device's name or room (audited)")
    rename.add_argument("device", help="the device id, as `kotihub devices` shows it")
    rename.add_argument("--name", help="the new name (unchanged when left out)")
    rename.add_argument("--room", help="the new room (unchanged when left out)")
    rename.set_defaults(func=_rename)
    sync = sub.add_parser("sync", parents=[common], help="the uplink's lanes: waiting items, last success and errors")
    sync.add_argument("--now", action="store_true", help="retry every lane at once")
    sync.set_defaults(func=_sync)
    retention = sub.add_parser("retention", parents=[common], help="retention horizon, what is due, last run")
    retention.add_argument("--run", action="store_true", help="run retention now")
    retention.add_argument("--force", action="store_true", help="run even if the clock is not confirmed (check it!)")
    retention.set_defaults(func=_retention)
    erase = sub.add_parser("erase", parents=[common], help="erase the household's data (Poista tietoni)")
    which = erase.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="everything the hub holds")
    which.add_argument("--device", help="everything of one device (its id, as `kotihub devices` shows it)")
    which.add_argument("--category", choices=categories, help="everything of one category")
    erase.add_argument("--yes", action="store_true", help="confirm without asking")
    erase.set_defaults(func=_erase)
    receipt = sub.add_parser("receipt", help="erasure receipts: list them, verify one")
    receipt_sub = receipt.add_subparsers(dest="receipt_command", required=True)
    receipt_sub.add_parser("list", parents=[common], help="this hub's erasure receipts").set_defaults(
        func=_receipt_list
    )
    verify = receipt_sub.add_parser("verify", parents=[common], help="check a receipt's signatures (offline)")
    verify.add_argument("file", type=Path, help="the receipt as JSON (kotihub erase --json, or the app)")
    verify.add_argument("--ca", type=Path, default=None, help="the register's CA certificate (default: the hub's)")
    verify.set_defaults(func=_receipt_verify)
    export = sub.add_parser("export", parents=[common], help="export the household's data (Näytä tietoni)")
    export.add_argument("--out", type=Path, required=True, help="the zip file to write (mode 0600)")
    export.set_defaults(func=_export)
    test = sub.add_parser("selftest", parents=[common], help="the technician's checks: OK / WARN / FAIL")
    test.add_argument("--alarm-test", action="store_true", help="send a test alarm end to end to the register")
    test.add_argument("--lang", choices=list(i18n.LANGUAGES), help="fi or en (default: from the locale)")
    test.set_defaults(func=_selftest)
    diag = sub.add_parser("diag", parents=[common], help="a support bundle with personal data redacted")
    diag.add_argument("--out", type=Path, required=True, help="the zip file to write (mode 0600)")
    diag.set_defaults(func=_diag)
    clip = sub.add_parser("clip", help="camera clips")
    clip_sub = clip.add_subparsers(dest="clip_command", required=True, metavar="COMMAND")
    decrypt = clip_sub.add_parser("decrypt", help="decrypt a clip with a household member's identity (as the app does)")
    decrypt.add_argument(
        "--identity", type=Path, required=True, help="the member's age identity file (AGE-SECRET-KEY-1...)"
    )
    decrypt.add_argument(
        "--out", type=Path, default=None, help="where to write it (default: CLIP as .mp4, .ts or .jpg by content)"
    )
    decrypt.add_argument("clip", type=Path, help="the encrypted clip (.age)")
    decrypt.set_defaults(func=_clip_decrypt)
    provision = sub.add_parser("provision", parents=[common], help="enroll this hub with the register")
    provision.add_argument("--register", required=True, help="https:// URL of the register")
    provision.add_argument("--token", required=True, help="the one-time enrollment token")
    provision.add_argument("--ca-file", type=Path, default=None, help="the register's CA certificate")
    provision.add_argument("--force", action="store_true", help="replace an existing enrollment")
    provision.add_argument(
        "--pairing-code",
        default=None,
        help="the pairing code shown on a household member's device (pins the household)",
    )
    provision.set_defaults(func=_provision)
    member_cli.add_parser(sub)
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = cfg_sub.add_parser("check", help="validate a configuration file: every problem, with its key")
    check.add_argument("file", type=Path, help="the TOML file, e.g. /etc/kotihub/kotihub.toml")
    check.set_defaults(func=_config_check)
    update = sub.add_parser("update", help="releases: what runs, what was tried (kotihub-updater does the work)")
    update_sub = update.add_subparsers(dest="update_command", required=True, metavar="COMMAND")
    ustatus = update_sub.add_parser("status", parents=[common], help="running release, previous, recent attempts")
    ustatus.add_argument("--updater-config", type=Path, default=None, help="updater.toml (default /etc/kotihub/)")
    ustatus.set_defaults(func=_update_status)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except DaemonUnreachable as exc:
        print(f"kotihub: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConfigError as exc:
        print(f"kotihub: configuration: {exc}", file=sys.stderr)
        return 1
    except (ControlError, KotihubError) as exc:
        print(f"kotihub: {exc}", file=sys.stderr)
        return 1
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return clitools.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
