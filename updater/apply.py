"""One update: verify, install side by side, switch, restart, confirm or roll back. And :meth:`Updater.recover`,
which finishes whatever a power cut interrupted.

The order of steps, and what a power cut after each leaves (docs/updates.md has the table):

1. fetch + verify (TUF), install into ``releases/<v>`` and mark it complete: nothing switched; the next run
   installs again or finds it complete.
2. ``state.json`` says "trial of <v> from <old>": written before anything is switched.
3. ``previous`` → old, then ``current`` → new (each an atomic rename): the daemon starts whatever ``current`` is
   at boot; :meth:`recover` then judges it like a fresh switch.
4. restart, health window; confirmed → ``state.json`` idle. Not healthy → ``current`` → old, restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloud_sync.releases import BundleError, read_manifest, version_key
from updater import health, install, state
from updater.errors import InstallFailed, Refused
from updater.fetch import ReleaseSource
from updater.health import Verdict
from updater.install import Layout
from updater.service import Service

log = logging.getLogger(__name__)


@dataclass
class Updater:
    layout: Layout
    state_file: Path
    service: Service
    source: ReleaseSource
    platform: str
    python: str
    look: Callable[[str, float], Verdict]
    """``look(version, since)``: one health probe of the running daemon (:func:`updater.health.probe`)."""
    window_s: float
    keep_releases: int = 3
    base_site: Path | None = None
    poll_s: float = 0.5

    def current(self) -> str | None:
        return self.layout.version_of(self.layout.current)

    def apply(self, version: str) -> state.Attempt:
        """Brings ``version`` in, or explains why not; the outcome is in the returned attempt and in state.json."""
        st = self.recover()
        running = self.current()
        if running == version:
            return st.record(version, "confirmed", "already running")
        if running is not None and version_key(version) < version_key(running):
            return self._finish(st, version, "refused", f"{version} is older than the running {running}")
        try:
            bundle = self.source.fetch(version, self.platform)
            try:
                manifest = read_manifest(bundle)
            except BundleError as exc:
                raise Refused(str(exc)) from exc
            if manifest.version != version or manifest.platform != self.platform:
                raise Refused(f"bundle says {manifest.version}/{manifest.platform}, expected {version}/{self.platform}")
            install.install(bundle, manifest, self.layout, python=self.python, base_site=self.base_site)
        except Refused as exc:
            return self._finish(st, version, "refused", str(exc))
        except InstallFailed as exc:
            return self._finish(st, version, "install_failed", str(exc))
        return self._try(st, version, running)

    def _try(self, st: state.State, version: str, running: str | None) -> state.Attempt:
        since = time.time()
        st.phase, st.trial_version, st.trial_from, st.trial_started = "trial", version, running, since
        state.save(self.state_file, st)
        if running is not None:
            self.layout.switch(self.layout.previous, running)
        self.layout.switch(self.layout.current, version)
        log.info("switched to release %s (from %s); restarting the daemon", version, running)
        self.service.restart()
        return self._judge(st)

    def _judge(self, st: state.State) -> state.Attempt:
        version, since = st.trial_version, st.trial_started or time.time()
        assert version is not None
        verdict = health.wait_healthy(
            lambda: self.look(version, since), self.window_s, alive=self.service.alive, poll_s=self.poll_s
        )
        if verdict.healthy:
            log.info("release %s confirmed: %s", version, verdict.reason)
            attempt = self._finish(st, version, "confirmed", verdict.reason)
            self.layout.prune(self.keep_releases, set())
            return attempt
        log.error("release %s is not healthy (%s): rolling back to %s", version, verdict.reason, st.trial_from)
        if st.trial_from is not None:
            self.layout.switch(self.layout.current, st.trial_from)
            self.service.restart()
        return self._finish(st, version, "rolled_back", verdict.reason)

    def _finish(self, st: state.State, version: str, outcome: str, detail: str) -> state.Attempt:
        st.phase, st.trial_version, st.trial_from, st.trial_started = "idle", None, None, None
        attempt = st.record(version, outcome, detail)
        state.save(self.state_file, st)
        return attempt

    def recover(self) -> state.State:
        """Finishes a trial a power cut (or a killed updater) left open: if ``current`` never moved, nothing
        happened; otherwise the release gets a fresh health window and is kept or rolled back."""
        st = state.load(self.state_file)
        if st.phase != "trial" or st.trial_version is None:
            return st
        if self.current() != st.trial_version:
            self._finish(st, st.trial_version, "rolled_back", "interrupted before the switch")
            return st
        log.warning("finishing the interrupted trial of release %s", st.trial_version)
        st.trial_started = time.time()
        self._judge(st)
        return st
