"""A register's households and hubs made in its database, for tests that run register processes of their own
(``serve --workers``, the alarm listener), and what they read of those processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cloud_sync.enroll import enroll
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from tests.support.register import HubIdentity
from tests.support.register_proc import RegisterProcess

ACTOR = "test:workers"


def session(ca: Path) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(ca)
    return s


class Fleet:
    """Households and hubs of a register whose processes share ``state``, made through a Registry of its own."""

    def __init__(self, state: Path, db_url: str) -> None:
        self.state = state
        self.reg = Registry(Settings(state_dir=state, db_url=db_url))

    def hub(self, url: str, n: int) -> HubIdentity:
        h = self.reg.create_household(f"koti{n}", actor=ACTOR)
        d = self.state.parent / f"hub{n}"
        resp = enroll(url, self.reg.create_enroll_token(h, ttl_s=600, actor=ACTOR), d, ca_file=self.state / "ca.crt")
        return HubIdentity(resp.hub_id, resp.household_id, d / "hub.crt", d / "hub.key", d / "register-ca.crt", d)

    def queue(self, url: str, hub: HubIdentity) -> str:
        token = self.reg.create_api_token("household", hub.household_id, actor=ACTOR)
        s = session(self.state / "ca.crt")
        s.headers["Authorization"] = f"Bearer {token}"
        r = s.post(
            f"{url}/v1/households/{hub.household_id}/commands",
            json={"kind": "restrict", "args": {"category": "camera"}},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        ids: list[str] = r.json()["ids"]
        return ids[0]


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str) -> Iterator[Fleet]:
    f = Fleet(tmp_path / "state", postgres_url)
    try:
        yield f
    finally:
        f.reg.close()


def wait_for_log(proc: RegisterProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, proc.log.read_text(errors="replace")[-3000:]
        time.sleep(0.05)


def metric(body: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def worker_pids(parent: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's spawned children, not its resource tracker)."""
    kids = [int(k) for t in Path(f"/proc/{parent}/task").iterdir() for k in (t / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in _cmdline(k)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # exited meanwhile
        return b""
