"""``kotihub selftest``: one screen a technician can read. Each check is OK, WARN or FAIL with what to do about it.

Checks run inside the daemon (it knows its drivers and its uplink) and come back as message ids with parameters, so
the CLI can show them in Finnish or English.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import crypto, humanize
from gateway.model import DeviceKind, Event, EventKind, Lane

if TYPE_CHECKING:
    from gateway.daemon import Daemon

OK, WARN, FAIL = "ok", "warn", "fail"
LOW_DISK_BYTES = 512 * 1024 * 1024
CERT_WARN_DAYS = 30
ALARM_TEST_TIMEOUT_S = 10.0


def check(check_id: str, status: str, message: str, advice: str | None = None, **params: Any) -> dict[str, Any]:
    return {"check": check_id, "status": status, "message": message, "advice": advice, "params": params}


def card_wear(sys_block: Path = Path("/sys/block")) -> str | None:
    """eMMC life-time estimate (JEDEC: 0x01 = 0-10% used ... 0x0B = exceeded), if the card reports one."""
    for path in sys_block.glob("mmcblk*/device/life_time"):
        try:
            values = [int(v, 16) for v in path.read_text().split()]
        except (OSError, ValueError):
            continue
        worst = max(values, default=0)
        if worst:
            return "exceeded" if worst >= 0x0B else f"{(worst - 1) * 10}-{worst * 10}% used"
    return None


async def run_checks(daemon: Daemon, *, alarm_test: bool = False) -> list[dict[str, Any]]:
    assert daemon.store is not None and daemon.hub is not None and daemon.retention is not None
    cfg = daemon.config
    results: list[dict[str, Any]] = []

    clock = daemon.retention.clock
    if clock.trusted():
        results.append(check("clock", OK, "clock.trusted", reason=clock.reason))
    else:
        results.append(check("clock", WARN, "clock.untrusted", "clock.fix", reason=clock.reason))

    usage = daemon.store.disk_usage()
    free = usage["free_bytes"]
    low = free < max(LOW_DISK_BYTES, cfg.store.min_free_bytes)
    results.append(
        check(
            "disk",
            WARN if low else OK,
            "disk.low" if low else "disk.ok",
            "disk.fix" if low else None,
            free=humanize.size(free),
        )
    )
    wear = card_wear()
    if wear is None:
        results.append(check("card", OK, "card.unknown"))
    else:
        worn = wear == "exceeded" or wear.startswith(("80", "90"))
        results.append(check("card", WARN if worn else OK, "card.wear", "card.fix" if worn else None, level=wear))

    results.append(_key_check(cfg.state_path))

    for name, task in daemon.hub.driver_health.items():
        driver = daemon.hub.drivers.get(name)
        if (link := driver.link() if driver is not None else None) is not None:
            down = FAIL if link.essential else WARN
            results.append(
                check(
                    link.check,
                    OK if link.up else down,
                    f"{link.messages}.ok" if link.up else f"{link.messages}.down",
                    None if link.up else f"{link.messages}.fix",
                    reason=link.reason,
                )
            )
        healthy = task.state == "running" and not task.last_error
        results.append(
            check(
                f"driver:{name}",
                OK if healthy else WARN,
                "driver.ok" if healthy else "driver.restarting",
                None if healthy else "driver.fix",
                name=name,
                restarts=task.restarts,
                error=task.last_error or "-",
            )
        )

    results.extend(await _uplink_checks(daemon))
    if alarm_test:
        results.append(_siren_check(daemon))
        results.append(await _alarm_test(daemon))
    return results


def _siren_check(daemon: Daemon) -> dict[str, Any]:
    """Every siren the hub knows, reachable? A siren is reachable when it or the node it hangs on is online; the
    check does not sound them (a test at night would wake the house), the alarm test proper is the smoke path."""
    hub = daemon.hub
    assert hub is not None
    known = [d for d in hub.devices.values() if d.info.kind is DeviceKind.SIREN]
    if not known or daemon.sirens is None:
        return check("sirens", WARN, "sirens.none", "sirens.fix")

    def reachable(state: Any) -> bool:
        via = hub.devices.get(state.info.via)
        return bool(state.online and (via is None or via.online))

    offline = sum(1 for d in known if not reachable(d))
    if offline:
        return check("sirens", FAIL, "sirens.offline", "sirens.fix", n=offline, total=len(known))
    return check("sirens", OK, "sirens.ok", total=len(known))


def _key_check(state_dir: Path) -> dict[str, Any]:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / crypto.CREDENTIAL_NAME).exists():
        return check("master_key", OK, "key.ok", where="systemd credential")
    path = state_dir / crypto.MASTER_KEY_FILE
    try:
        crypto.load_master_key(state_dir, credentials_dir="", create=False)
    except Exception as exc:  # the reason is what the technician needs to see
        return check("master_key", FAIL, "key.bad", "key.fix", reason=str(exc))
    return check("master_key", OK, "key.ok", where=f"{path} (0600)")


async def _uplink_checks(daemon: Daemon) -> list[dict[str, Any]]:
    uplink = daemon.uplink
    if uplink is None:
        return [check("register", WARN, "register.unprovisioned", "register.unprovisioned.fix")]
    out: list[dict[str, Any]] = []
    identity = uplink.identity
    try:
        not_after = await asyncio.to_thread(_cert_expiry, identity.cert)
        client = uplink.client()
        try:
            await asyncio.to_thread(client.request, "GET", "/v1/health")
        finally:
            client.close()
    except Exception as exc:  # unreachable, TLS failure, bad certificate: all are the technician's to see
        out.append(check("register", FAIL, "register.down", "register.fix", error=str(exc)[:200]))
    else:
        until = not_after.strftime("%Y-%m-%d")
        expiring = not_after - dt.datetime.now(dt.UTC) < dt.timedelta(days=CERT_WARN_DAYS)
        out.append(
            check("register", WARN if expiring else OK, "register.expiring" if expiring else "register.ok", until=until)
        )
    assert daemon.store is not None
    depth = await daemon.store.depth()
    stuck = [
        (lane, status)
        for lane, status in uplink.status.items()
        if depth.get(lane, 0) and status.last_error and (status.last_success or 0) < time.time() - 600
    ]
    if stuck:
        for lane, status in stuck:
            out.append(
                check(
                    f"lane:{lane}",
                    WARN,
                    "lanes.stuck",
                    "register.fix",
                    lane=lane,
                    waiting=depth[lane],
                    error=status.last_error,
                )
            )
    else:
        out.append(check("lanes", OK, "lanes.ok", waiting=sum(depth.values())))
    return out


def _cert_expiry(path: Path) -> dt.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


async def _alarm_test(daemon: Daemon) -> dict[str, Any]:
    """A test alarm (smoke detector state ``test``) through the store and the alarm lane, acknowledged by the
    register."""
    uplink, store = daemon.uplink, daemon.store
    if uplink is None or store is None:
        return check("alarm_test", WARN, "alarm.skipped")
    started = time.monotonic()
    seq = await store.add_event(
        Event(
            device_id="kotihub:selftest", kind=EventKind.SMOKE, state="test", ts=time.time(), attrs={"selftest": True}
        )
    )
    deadline = started + ALARM_TEST_TIMEOUT_S
    while time.monotonic() < deadline:
        if uplink.status[Lane.ALARM.value].cursor >= seq:
            return check("alarm_test", OK, "alarm.ok", ms=round((time.monotonic() - started) * 1000))
        await asyncio.sleep(0.02)
    return check("alarm_test", FAIL, "alarm.fail", "register.fix", s=ALARM_TEST_TIMEOUT_S)
