"""``kotihub-register release …``: the release repository and the staged rollout.

Repository (TUF; keys are files the operator keeps where docs/updates.md says)::

    release keys DIR                      one Ed25519 key per role: root.pem, targets.pem, snapshot.pem, timestamp.pem
    release init --keys DIR               a new repository in <state>/releases (root signed with root.pem)
    release build --project P --out D     a bundle: the project's wheel + every dependency's wheel + manifest
    release add BUNDLE --keys DIR         sign it (targets, snapshot, timestamp) and publish it
    release timestamp --keys DIR          re-sign the timestamp (the register's timer; a hub refuses a stale one)

Rollout::

    release list | hubs | start V --percent N | pause V | pin HUB V | hold HUB | follow HUB
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner

from cloud_sync.register import bundle, config_push, rollout, tufrepo
from cloud_sync.register.errors import Invalid
from cloud_sync.register.registry import Registry
from cloud_sync.register.releases import repo_dir
from cloud_sync.releases import HUB_PLATFORM, BundleError, read_manifest


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    ap = sub.add_parser("release", help="signed releases (TUF) and their staged rollout", parents=[common])
    rs = ap.add_subparsers(dest="sub", required=True)

    def cmd(name: str, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = rs.add_parser(name, help=text, parents=[common])
        p.set_defaults(func=_release, existing=True)
        return p

    cmd("keys", "make one Ed25519 key per TUF role in a directory (keep root.pem offline)").add_argument(
        "dir", type=Path, help="where to write root.pem, targets.pem, snapshot.pem, timestamp.pem"
    )
    for name, text in (
        ("init", "create the release repository, its root signed by the root key"),
        ("timestamp", "re-sign the timestamp over the newest snapshot (run from a timer)"),
    ):
        cmd(name, text).add_argument("--keys", type=Path, required=True, help="directory with the role keys")
    b = cmd("build", "build a release bundle: project wheel, dependency wheels, manifest")
    b.add_argument("--project", type=Path, required=True, help="the kotihub source tree")
    b.add_argument("--out", type=Path, required=True, help="directory for the bundle")
    b.add_argument("--platform", default=HUB_PLATFORM, help=f"wheel platform tag (default {HUB_PLATFORM})")
    b.add_argument("--extras", default="hub,miio", help="extras to bundle, comma-separated (default hub,miio)")
    a = cmd("add", "sign a bundle and publish it (new targets, snapshot, timestamp)")
    a.add_argument("bundle", type=Path, help="the bundle built by `release build`")
    a.add_argument("--keys", type=Path, required=True, help="directory with targets, snapshot and timestamp keys")
    cmd("list", "rollouts, newest first, with their outcomes")
    cmd("hubs", "where each hub stands: running, assigned, last outcome")
    s = cmd("start", "start a rollout or change its percentage (resumes a paused one)")
    s.add_argument("version", help="the release number")
    s.add_argument("--percent", type=int, required=True, help="share of hubs (by cohort), 0-100")
    s.add_argument("--max-failure-rate", type=float, default=0.2, help="pause above this failure share (0.2)")
    s.add_argument("--min-reports", type=int, default=5, help="outcomes needed before pausing (default 5)")
    cmd("pause", "pause a rollout: hubs not yet updated stay where they are").add_argument(
        "version", help="the release number"
    )
    p = cmd("pin", "pin one hub to a release (a technician's choice beats any rollout)")
    p.add_argument("hub", help="hub id")
    p.add_argument("version", help="the release number")
    cmd("hold", "hold one hub on the release it runs").add_argument("hub", help="hub id")
    cmd("follow", "let a pinned or held hub follow rollouts again").add_argument("hub", help="hub id")


def add_config_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    ap = sub.add_parser("config", help="remote configuration: push a kotihub.toml to hubs", parents=[common])
    cs = ap.add_subparsers(dest="sub", required=True)
    p = cs.add_parser("push", help="validate a kotihub.toml and queue it for hubs", parents=[common])
    p.add_argument("file", type=Path, help="the new kotihub.toml (checked as `kotihub config check` does)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--hub", action="append", help="a hub id (repeat for several)")
    target.add_argument("--percent", type=int, help="every hub whose cohort is below this (1-100)")
    p.set_defaults(func=_config, existing=True)
    cs.add_parser("list", help="pushes, newest first, with their outcomes", parents=[common]).set_defaults(
        func=_config, existing=True
    )


def _config(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    if args.sub == "list":
        return config_push.pushes(reg, actor=actor)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read {args.file}: {exc}") from exc
    ids = config_push.push(reg, text, actor=actor, hubs=args.hub, percent=args.percent)
    return f"queued for {len(ids)} hub(s)"


def _keys(d: Path) -> dict[str, CryptoSigner]:
    return {role: tufrepo.load_signer(d / f"{role}.pem") for role in tufrepo.ROLES if (d / f"{role}.pem").exists()}


def _release(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    repo = tufrepo.Repository(repo_dir(reg))
    match args.sub:
        case "keys":
            args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return {role: tufrepo.generate_key(args.dir / f"{role}.pem").keyid for role in tufrepo.ROLES}
        case "init":
            k = _keys(args.keys)
            repo.create(
                k["root"],
                {role: s.public_key for role, s in k.items()},
                targets_signer=k["targets"],
                snapshot_signer=k["snapshot"],
                timestamp_signer=k["timestamp"],
            )
            reg.audit(actor, "release.init", None)
            return f"release repository created in {repo.dir}"
        case "timestamp":
            ts = repo.sign_timestamp(_keys(args.keys)["timestamp"])
            return f"timestamp {ts.signed.version} valid until {ts.signed.expires:%Y-%m-%d %H:%M}Z"
        case "build":
            extras = tuple(e for e in args.extras.split(",") if e)
            out, manifest = bundle.build(args.project, args.out, platform=args.platform, extras=extras)
            return f"{out} ({len(manifest.wheels)} wheels)"
        case "add":
            try:
                manifest = read_manifest(args.bundle)
            except BundleError as exc:
                raise Invalid(str(exc), code="bad_bundle") from exc
            k = _keys(args.keys)
            name = repo.add_bundle(
                args.bundle,
                manifest,
                targets_signer=k["targets"],
                snapshot_signer=k["snapshot"],
                timestamp_signer=k["timestamp"],
            )
            reg.audit(actor, "release.add", None, name)
            return f"published {name}"
        case "list":
            return rollout.rollouts(reg)
        case "hubs":
            return rollout.hubs(reg, actor=actor)
        case "start":
            return rollout.start(
                reg,
                args.version,
                args.percent,
                actor=actor,
                max_failure_rate=args.max_failure_rate,
                min_reports=args.min_reports,
            )
        case "pause":
            rollout.pause(reg, args.version, actor=actor)
            return f"rollout of {args.version} paused"
        case "pin":
            rollout.set_override(reg, args.hub, actor=actor, pin=args.version, hold=False)
            return f"{args.hub} pinned to {args.version}"
        case "hold":
            rollout.set_override(reg, args.hub, actor=actor, pin=None, hold=True)
            return f"{args.hub} held"
        case "follow":
            rollout.set_override(reg, args.hub, actor=actor, pin=None, hold=False)
            return f"{args.hub} follows rollouts"
    raise AssertionError(args.sub)
