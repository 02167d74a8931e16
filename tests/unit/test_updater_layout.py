"""The updater's parts that need no daemon: the atomic switch, pruning, an interrupted trial, the health wait."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from updater import health, state
from updater.apply import Updater
from updater.errors import InstallFailed
from updater.health import Verdict
from updater.install import COMPLETE, Layout


def _release(layout: Layout, version: str, *, complete: bool = True) -> None:
    d = layout.release_dir(version)
    (d / "venv").mkdir(parents=True)
    if complete:
        (d / COMPLETE).write_text(version)


class NoFetch:
    def fetch(self, version: str, platform: str) -> Path:
        raise AssertionError("nothing may be fetched")


class Service:
    def __init__(self) -> None:
        self.restarts = 0

    def restart(self) -> None:
        self.restarts += 1

    def alive(self) -> bool:
        return True


def _updater(tmp_path: Path, service: Service) -> Updater:
    return Updater(
        layout=Layout(tmp_path / "opt"),
        state_file=tmp_path / "state.json",
        service=service,
        source=NoFetch(),  # type: ignore[arg-type]
        platform="linux_x86_64",
        python="python3",
        look=lambda v, since: Verdict(False, "never healthy"),
        window_s=0.01,
        poll_s=0.001,
    )


def test_switch_replaces_the_link_atomically_and_only_to_a_complete_release(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    _release(layout, "1.0")
    _release(layout, "1.1")
    _release(layout, "1.2", complete=False)
    layout.switch(layout.current, "1.0")
    assert os.readlink(layout.current) == "releases/1.0"  # relative: the tree can be copied as a whole
    layout.switch(layout.current, "1.1")
    assert layout.version_of(layout.current) == "1.1"
    with pytest.raises(InstallFailed, match="not installed"):
        layout.switch(layout.current, "1.2")
    assert layout.version_of(layout.current) == "1.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "releases"]  # no temporary link left


def test_prune_keeps_current_previous_and_the_newest_others(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for i, v in enumerate(["1.0", "1.1", "1.2", "1.3", "1.4"]):
        _release(layout, v)
        os.utime(layout.release_dir(v), (1000 + i, 1000 + i))
    layout.switch(layout.current, "1.1")
    layout.switch(layout.previous, "1.0")
    layout.prune(3, set())
    assert sorted(p.name for p in layout.releases.iterdir()) == ["1.0", "1.1", "1.4"]


def test_a_trial_cut_off_before_the_switch_is_closed_without_touching_anything(tmp_path: Path) -> None:
    service = Service()
    updater = _updater(tmp_path, service)
    _release(updater.layout, "1.0")
    _release(updater.layout, "1.1")
    updater.layout.switch(updater.layout.current, "1.0")
    state.save(updater.state_file, state.State(phase="trial", trial_version="1.1", trial_from="1.0", trial_started=1.0))
    st = updater.recover()
    assert (st.phase, st.history[-1].outcome, st.history[-1].detail) == (
        "idle",
        "rolled_back",
        "interrupted before the switch",
    )
    assert updater.current() == "1.0" and service.restarts == 0


def test_a_trial_cut_off_after_the_switch_is_judged_and_rolled_back(tmp_path: Path) -> None:
    service = Service()
    updater = _updater(tmp_path, service)
    _release(updater.layout, "1.0")
    _release(updater.layout, "1.1")
    updater.layout.switch(updater.layout.previous, "1.0")
    updater.layout.switch(updater.layout.current, "1.1")
    state.save(updater.state_file, state.State(phase="trial", trial_version="1.1", trial_from="1.0", trial_started=1.0))
    st = updater.recover()
    assert st.history[-1].outcome == "rolled_back" and "never healthy" in st.history[-1].detail
    assert updater.current() == "1.0" and service.restarts == 1


def test_an_older_release_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    updater = _updater(tmp_path, Service())
    _release(updater.layout, "2.0")
    updater.layout.switch(updater.layout.current, "2.0")
    attempt = updater.apply("1.9.9")
    assert attempt.outcome == "refused" and "older" in attempt.detail
    assert state.load(updater.state_file).history[-1].outcome == "refused"


def test_the_health_wait_ends_early_when_the_daemon_is_gone_and_on_time_otherwise() -> None:
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    looks = iter([Verdict(False, "starting"), Verdict(False, "starting"), Verdict(True, "ok")])
    got = health.wait_healthy(lambda: next(looks), 10, clock=lambda: t[0], sleep=sleep, poll_s=1)
    assert got.healthy and t[0] == 2
    t[0] = 0.0
    gone = health.wait_healthy(
        lambda: Verdict(False, "no socket"), 10, alive=lambda: False, clock=lambda: t[0], sleep=sleep
    )
    assert not gone.healthy and "exited" in gone.reason and t[0] == 0
    late = health.wait_healthy(lambda: Verdict(False, "no socket"), 10, clock=lambda: t[0], sleep=sleep, poll_s=1)
    assert not late.healthy and "within 10 s" in late.reason and t[0] == 10


def test_a_configuration_trial_cut_off_by_a_power_cut_is_judged_and_reverted(tmp_path: Path) -> None:
    from updater.configure import Configurer

    config = tmp_path / "kotihub.toml"
    config.write_text('[hub]\nname = "old"\n')
    service = Service()
    looks: list[float] = []

    def look(since: float) -> Verdict:
        looks.append(since)
        return Verdict(False, "selftest FAIL: register")

    c = Configurer(config, tmp_path / "updater" / "config-state.json", service, look, window_s=0.01, poll_s=0.001)
    assert c.recover() is None  # nothing on trial: nothing done
    # The push is refused if it would move the store, before anything is written.
    assert c.apply("cfg_1", '[hub]\nstate_dir = "/elsewhere"\n')[0] == "refused"
    assert config.read_text() == '[hub]\nname = "old"\n' and service.restarts == 0
    # A valid push that the daemon does not survive is put back, and the daemon restarted on the old file.
    outcome, detail = c.apply("cfg_2", '[hub]\nname = "new"\n')
    assert (outcome, detail) == ("reverted", "not healthy within 0 s: selftest FAIL: register")
    assert config.read_text() == '[hub]\nname = "old"\n' and service.restarts == 2
    # The power cut: the new file in place and the trial recorded, nothing judged yet. The next run finishes it.
    c.previous.write_text('[hub]\nname = "old"\n')
    config.write_text('[hub]\nname = "new"\n')
    c.state_file.write_text('{"push_id": "cfg_3", "started": 1.0}')
    assert c.recover() == ("cfg_3", "reverted", "not healthy within 0 s: selftest FAIL: register")
    assert config.read_text() == '[hub]\nname = "old"\n' and not c.state_file.exists()
