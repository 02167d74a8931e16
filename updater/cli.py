"""``kotihub-updater``: what ``kotihub-updater.service`` runs from its timer (``run``), and a technician's tools.

    kotihub-updater run            finish an interrupted trial, ask the register, apply, report
    kotihub-updater apply VERSION  bring one release in now (TUF-verified like any other; never older)
    kotihub-updater status         what runs, what was tried, what is being tried (also `kotihub update status`)
    kotihub-updater check-root FILE     whether FILE is a release root the updater can start from
    kotihub-updater install-files …     check the operator's settings and release root, then place exactly the bytes
                                        checked (scripts/install)
    kotihub-updater check-config FILE   whether FILE is updater settings it can read; prints their trusted_root

Exit status: 0 done (or nothing to do), 1 refused / rolled back / install failed, 2 transient (try later).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import requests

from cloud_sync import releases as rel
from updater import config as configuration
from updater import health, installcheck, state
from updater.apply import Updater
from updater.configure import Configurer
from updater.errors import TransientUpdateError
from updater.fetch import ReleaseSource, hub_session
from updater.install import Layout
from updater.service import Service, SystemdService

log = logging.getLogger(__name__)

FAILED = ("rolled_back", "refused", "install_failed")


def register_url(cfg: configuration.UpdaterConfig) -> str:
    if cfg.register_url:
        return cfg.register_url
    try:
        hub = tomllib.loads(Path(cfg.hub_config).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return str(hub.get("uplink", {}).get("register_url", ""))


def session(cfg: configuration.UpdaterConfig) -> requests.Session:
    s = Path(cfg.hub_state_dir)
    return hub_session(s / "hub.crt", s / "hub.key", s / "register-ca.crt")


def make_updater(
    cfg: configuration.UpdaterConfig, *, service: Service | None = None, base_site: Path | None = None
) -> Updater:
    socket = Path(cfg.control_socket)
    return Updater(
        layout=Layout(cfg.root_path),
        state_file=cfg.state_path / "state.json",
        service=service or SystemdService(cfg.restart_command, cfg.active_command),
        source=ReleaseSource(register_url(cfg), cfg.state_path, Path(cfg.trusted_root), session(cfg)),
        platform=cfg.platform,
        python=cfg.python,
        look=lambda version, since: health.probe(
            socket, version=version, require_uplink=cfg.require_uplink, since=since
        ),
        window_s=cfg.health_window_s,
        keep_releases=cfg.keep_releases,
        base_site=base_site,
    )


def running_version(cfg: configuration.UpdaterConfig) -> str:
    """The release the daemon runs: ``current``, or (a hub installed before the release layout) this package's."""
    current = Layout(cfg.root_path).version_of(Layout(cfg.root_path).current)
    if current is not None:
        return current
    try:
        return importlib.metadata.version("kotihub")
    except importlib.metadata.PackageNotFoundError:
        return ""


def make_configurer(cfg: configuration.UpdaterConfig, *, service: Service | None = None) -> Configurer:
    socket, version = Path(cfg.control_socket), running_version(cfg)
    return Configurer(
        config_path=Path(cfg.hub_config),
        state_file=cfg.state_path / "config-state.json",
        service=service or SystemdService(cfg.restart_command, cfg.active_command),
        look=lambda since: health.probe(socket, version=version, require_uplink=cfg.require_uplink, since=since),
        window_s=cfg.health_window_s,
    )


def _post(cfg: configuration.UpdaterConfig, s: requests.Session, path: str, body: bytes) -> bool:
    try:
        resp = s.post(
            register_url(cfg).rstrip("/") + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
    except requests.RequestException:
        return False
    return resp.status_code in (204, 404, 422)  # 404/422: the register will never take it; do not resend forever


def configure_once(cfg: configuration.UpdaterConfig, configurer: Configurer) -> str | None:
    """Finishes an interrupted configuration trial, then applies the register's pending push if there is one;
    returns the outcome (None: nothing pending, or the register is unreachable)."""
    s = session(cfg)
    base = register_url(cfg).rstrip("/")
    recovered = configurer.recover()
    if recovered is not None:
        push_id, outcome, detail = recovered
        _post(cfg, s, f"/v1/config/{push_id}/outcome", msgspec.json.encode({"outcome": outcome, "detail": detail}))
    try:
        resp = s.get(base + "/v1/config/pending", timeout=30)
        pending = msgspec.json.decode(resp.content) if resp.status_code == 200 else {}
    except (requests.RequestException, msgspec.DecodeError):
        return None
    new_id, text = pending.get("push_id"), pending.get("toml")
    if not isinstance(new_id, str) or not isinstance(text, str):
        return None
    outcome, detail = configurer.apply(new_id, text)
    log.info("configuration %s: %s (%s)", new_id, outcome, detail)
    body = msgspec.json.encode({"outcome": outcome, "detail": detail[:512]})
    _post(cfg, s, f"/v1/config/{new_id}/outcome", body)
    return outcome


def assignment(cfg: configuration.UpdaterConfig, s: requests.Session) -> rel.Assignment:
    try:
        resp = s.get(register_url(cfg).rstrip("/") + "/v1/releases/assignment", timeout=30)
    except requests.RequestException as exc:
        raise TransientUpdateError(f"register unreachable: {exc}") from exc
    if resp.status_code != 200:
        raise TransientUpdateError(f"register answered {resp.status_code} to the assignment")
    try:
        return msgspec.json.decode(resp.content, type=rel.Assignment)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise TransientUpdateError(f"bad assignment from the register: {exc}") from exc


def report(cfg: configuration.UpdaterConfig, s: requests.Session) -> None:
    """Sends every outcome the register has not heard yet (they wait in state.json across runs)."""
    path = cfg.state_path / "state.json"
    st = state.load(path)
    for attempt in st.history:
        if attempt.reported or attempt.outcome not in ("confirmed", *FAILED):
            continue
        body = rel.Outcome(version=attempt.version, outcome=attempt.outcome, detail=attempt.detail[:512])  # type: ignore[arg-type]
        try:
            resp = s.post(
                register_url(cfg).rstrip("/") + "/v1/releases/outcome",
                data=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
        except requests.RequestException:
            return  # next run
        if resp.status_code in (204, 422):  # 422: the register will never take it; do not resend forever
            attempt.reported = True
    state.save(path, st)


def run_once(cfg: configuration.UpdaterConfig, updater: Updater, configurer: Configurer | None = None) -> int:
    """One timer run: the release first (a configuration is judged on the release that will run it), then any
    pushed configuration."""
    code = _release_once(cfg, updater)
    if code != 2:
        configure_once(cfg, configurer or make_configurer(cfg, service=updater.service))
    return code


def _release_once(cfg: configuration.UpdaterConfig, updater: Updater) -> int:
    s = session(cfg)
    updater.recover()
    report(cfg, s)
    try:
        a = assignment(cfg, s)
    except TransientUpdateError as exc:
        log.warning("%s; trying again on the next run", exc)
        return 2
    if a.version is None or a.version == updater.current():
        return 0
    st = state.load(updater.state_file)
    if any(h.version == a.version and h.outcome in FAILED for h in st.history) and a.reason != "pin":
        return 0  # tried and failed here; a technician's pin (or `apply`) tries again
    try:
        attempt = updater.apply(a.version)
    except TransientUpdateError as exc:
        log.warning("%s; trying again on the next run", exc)
        return 2
    report(cfg, s)
    return 0 if attempt.outcome == "confirmed" else 1


def status(cfg: configuration.UpdaterConfig) -> dict[str, Any]:
    layout = Layout(cfg.root_path)
    st = state.load(cfg.state_path / "state.json")
    return {
        "current": layout.version_of(layout.current),
        "previous": layout.version_of(layout.previous),
        **st.view(),
    }


def status_text(s: dict[str, Any]) -> str:
    lines = [f"running release: {s['current'] or '-'} (previous: {s['previous'] or '-'})"]
    if s["phase"] == "trial":
        lines.append(
            f"trying {s['trial_version']} since {time.strftime('%H:%M:%S', time.localtime(s['trial_started']))}"
        )
    for h in s["history"][-5:]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(h["at"]))
        lines.append(f"  {when}  {h['version']:<10} {h['outcome']:<14} {h['detail'][:80]}")
    return "\n".join(lines)


def _check(cmd: str, file: Path) -> int:
    try:
        if cmd == "check-root":
            print(f"{file}: {installcheck.check_root(file).text()}", file=sys.stderr)
        else:
            print(installcheck.check_config(file).trusted_root)
    except installcheck.BadInstallFile as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


def _install_files(dest: Path, release_root: Path | None, updater_config: Path | None) -> int:
    try:
        lines = installcheck.install_files(dest, release_root=release_root, updater_config=updater_config)
    except installcheck.BadInstallFile as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kotihub-updater", description="the hub's release updater")
    ap.add_argument("--config", type=Path, default=configuration.DEFAULT_PATH, help="updater.toml")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="finish an interrupted trial, ask the register, apply, report")
    a = sub.add_parser("apply", help="bring one release in now")
    a.add_argument("version", help="release number")
    st = sub.add_parser("status", help="what runs and what was tried")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    cr = sub.add_parser("check-root", help="check a release root (TUF root metadata signed by its own keys)")
    cr.add_argument("file", type=Path)
    cc = sub.add_parser("check-config", help="check updater settings; prints where they expect the release root")
    cc.add_argument("file", type=Path)
    inst = sub.add_parser(
        "install-files",
        help="check the operator's settings and release root, then place exactly what was checked (scripts/install)",
    )
    inst.add_argument("--dest", type=Path, default=Path("/"), help="the root of the installation (default /)")
    inst.add_argument("--release-root", type=Path, help="the operator's TUF root, placed where the settings say")
    inst.add_argument("--updater-config", type=Path, help="the operator's updater.toml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd in ("check-root", "check-config"):
        return _check(args.cmd, args.file)
    if args.cmd == "install-files":
        return _install_files(args.dest, args.release_root, args.updater_config)
    cfg = configuration.load(args.config)
    if args.cmd == "status":
        s = status(cfg)
        print(json.dumps(s, indent=2) if args.json else status_text(s))
        return 0
    updater = make_updater(cfg)
    if args.cmd == "run":
        return run_once(cfg, updater)
    try:
        attempt = updater.apply(args.version)
    except TransientUpdateError as exc:
        print(f"not now: {exc}", file=sys.stderr)
        return 2
    report(cfg, session(cfg))
    print(f"{attempt.version}: {attempt.outcome} {attempt.detail}")
    return 0 if attempt.outcome == "confirmed" else 1


if __name__ == "__main__":
    sys.exit(main())
