"""``kotihub-register app-link``: a one-time link that enrols a member's new device in the app, printed for a
technician or sent to the member by SMS or e-mail through the notification providers (configured as for alarms,
see cloud_sync/register/notify/config.py)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cloud_sync.register.errors import Invalid
from cloud_sync.register.notify.config import NotifyConfig
from cloud_sync.register.registry import Registry
from cloud_sync.register.webapp import links
from cloud_sync.register.webapp.context import public_url


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("app-link", help="a one-time link that sets up a member's device in the app", parents=[common])
    p.add_argument("--member", required=True, help="the member the link signs in")
    p.add_argument(
        "--send",
        choices=("sms", "email"),
        help="send it to the member's phone or e-mail instead of printing it",
    )
    p.add_argument(
        "--ttl", type=int, default=int(links.LINK_TTL_S), help=f"seconds the link works (default {links.LINK_TTL_S})"
    )
    p.set_defaults(func=run, existing=True)


def run(args: argparse.Namespace, reg: Registry, actor: str) -> Any:
    base = public_url(reg.settings)
    if args.send is None:
        return links.url(base, links.create(reg, args.member, actor=actor, now=time.time(), ttl_s=args.ttl))
    provider = NotifyConfig.from_env().providers.get(args.send)
    if provider is None:
        raise Invalid(f"no {args.send} provider is configured (see docs/notifications.md)")
    links.send(reg, provider, args.send, args.member, base, actor=actor, now=time.time(), ttl_s=args.ttl)
    return f"sent a one-time link by {args.send}"
