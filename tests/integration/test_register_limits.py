"""Bounded memory and input at the real register over TLS: a global budget for request bodies under concurrent
decompression bombs, depth and size limits on free-form JSON (422, never 500), and rate limits (429 with
``Retry-After``) on failed authentication and enrollment attempts, per source address and per household."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import zstandard
from requests.adapters import HTTPAdapter

from cloud_sync import protocol as p
from cloud_sync.enroll import enroll
from tests.integration.test_register import INGEST_HEADERS, _csr, anonymous, batch, bearer, error_of, post
from tests.support.flood import source
from tests.support.postgres import free_port
from tests.support.register import HubIdentity, RunningRegister


class _From(HTTPAdapter):
    """Connections from one loopback source address (each test client is its own 'machine')."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        kw["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kw)


def from_source(s: requests.Session, i: int) -> requests.Session:
    s.mount("https://", _From(source(i)))
    return s


JSON = {"Content-Type": "application/json"}


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# ----------------------------------------------------------------------------------------------- JSON limits


def test_deeply_nested_json_is_422_everywhere(register: RunningRegister) -> None:
    hub = register.enroll()
    h = hub.household_id
    app = bearer(register, register.api_token("household", h))
    for depth in (17, 1000, 100_000):
        body = '{"kind":"erase","args":' + _nested(depth) + "}"
        r = app.post(
            f"{register.url}/v1/households/{h}/commands", data=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code in (413, 422), (depth, r.status_code, r.text[:200])
        if r.status_code == 422:
            assert error_of(r) == "too_deep"
    (cid,) = register.queue_command(h, "restrict", {"category": "video", "on": True})
    r = hub.session().post(
        f"{register.url}/v1/commands/{cid}/result", data='{"status":"done","detail":' + _nested(1000) + "}"
    )
    assert r.status_code == 422 and error_of(r) == "too_deep"
    long = hub.session().post(
        f"{register.url}/v1/commands/{cid}/result", json={"status": "done", "detail": {"x": "y" * 70_000}}
    )
    assert long.status_code == 422 and error_of(long) == "too_long"
    # Within the limits the same endpoints work.
    ok = hub.session().post(
        f"{register.url}/v1/commands/{cid}/result", data='{"status":"done","detail":' + _nested(10) + "}"
    )
    assert ok.status_code == 200


# ----------------------------------------------------------------------------------------------- rate limits


def test_failed_bearer_tokens_are_rate_limited_per_source(register: RunningRegister) -> None:
    h = register.create_household()
    good = register.api_token("household", h)
    attacker = from_source(bearer(register, "kh_api_guess"), 1)
    codes = [attacker.get(f"{register.url}/v1/households/{h}").status_code for _ in range(21)]
    assert codes == [401] * 20 + [429]
    limited = attacker.get(f"{register.url}/v1/households/{h}")
    assert limited.status_code == 429 and error_of(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 600
    # The address is limited even with a good token; another address is not.
    assert from_source(bearer(register, good), 1).get(f"{register.url}/v1/households/{h}").status_code == 429
    assert from_source(bearer(register, good), 2).get(f"{register.url}/v1/households/{h}").status_code == 200


def test_a_forwarded_for_header_does_not_change_the_source_that_is_limited(register: RunningRegister) -> None:
    """No proxy stands in front of the register, so X-Forwarded-For is the client's own claim: guesses from
    127.0.0.1 (the address uvicorn would trust it from) each naming another address are all counted against
    127.0.0.1."""
    h = register.create_household()
    attacker = bearer(register, "kh_api_guess")
    codes = [
        attacker.get(f"{register.url}/v1/households/{h}", headers={"X-Forwarded-For": f"203.0.113.{k}"}).status_code
        for k in range(21)
    ]
    assert codes == [401] * 20 + [429]


def test_failed_bearer_tokens_are_rate_limited_per_household(register: RunningRegister) -> None:
    h, other = register.create_household(), register.create_household()
    for i in range(5):  # five addresses, each within its own allowance: a distributed guess at one household
        guesser = from_source(bearer(register, f"kh_api_guess{i}"), 10 + i)
        assert {guesser.get(f"{register.url}/v1/households/{h}").status_code for _ in range(20)} == {401}
    fresh = from_source(bearer(register, "kh_api_guess"), 20)
    r = fresh.get(f"{register.url}/v1/households/{h}")
    assert r.status_code == 429 and "household" in r.json()["detail"]
    assert fresh.get(f"{register.url}/v1/households/{other}").status_code == 401


def test_bad_client_certificates_are_rate_limited(register: RunningRegister, tmp_path: Path) -> None:
    hub = register.enroll()
    register.reg.revoke_hub(hub.hub_id, actor="test")
    s = from_source(hub.session(), 30)
    codes = [s.get(f"{register.url}/v1/commands").status_code for _ in range(21)]
    assert codes == [403] * 20 + [429]


def test_enrollment_attempts_are_rate_limited_per_source_and_household(register: RunningRegister) -> None:
    h = register.create_household()
    csr = {"csr_pem": _csr(), "hub_name": ""}
    guesser = from_source(anonymous(register), 40)
    codes = [
        guesser.post(f"{register.url}/v1/enroll", json={"token": f"kh_enroll_guess{i:04d}", **csr}).status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429]
    # A leaked (used) token tried from many addresses: the household's allowance runs out.
    token = register.enroll_token(h)
    used = register.enroll_token(h)
    enroll(register.url, used, register.settings.state_dir.parent / "leaky-hub", ca_file=register.ca_file)
    statuses = []
    for i in range(6):
        s = from_source(anonymous(register), 50 + i)
        statuses += [s.post(f"{register.url}/v1/enroll", json={"token": used, **csr}).status_code for _ in range(10)]
    # 50 attempts per household: the hub's own enrollment was the first, 49 more get their answer, then 429.
    assert statuses == [403] * 49 + [429] * 11, statuses
    # The household's fresh token is held up too, until the allowance comes back: the price of a leaked token.
    r = from_source(anonymous(register), 70).post(f"{register.url}/v1/enroll", json={"token": token, **csr})
    assert r.status_code == 429


def test_enrolling_from_an_address_never_counts_against_its_hubs(register: RunningRegister) -> None:
    """Enrollment attempts and failed authentications are two allowances: spending the first (a technician enrolling
    hubs from one address, or the household's NAT) leaves the hubs behind that address served. They were one bucket,
    and a register worker that took a few enrollments refused its hubs' requests with 429 for minutes."""
    hub = register.enroll()
    csr = {"csr_pem": _csr(), "hub_name": ""}
    technician = from_source(anonymous(register), 80)
    codes = [
        technician.post(f"{register.url}/v1/enroll", json={"token": f"kh_enroll_typo{i:04d}", **csr}).status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429], "the enrollment allowance is spent"
    same_address = from_source(hub.session(), 80)
    r = same_address.get(f"{register.url}/v1/commands", params={"wait": 0})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------------ the budget


def _bomb(inflated: int) -> bytes:
    """zstd of zeros, streamed so that the frame declares no size."""
    c = zstandard.ZstdCompressor(level=19, write_content_size=False).compressobj()
    zeros = bytes(1 << 20)
    out = [c.compress(zeros) for _ in range(inflated >> 20)]
    return b"".join(out) + c.flush()


def _rss_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1))


@pytest.fixture
def register_process(tmp_path: Path) -> Iterator[tuple[str, Path, int, HubIdentity]]:
    """``kotihub-register serve`` as its own process (its memory is measured alone), with one enrolled hub."""
    port, state = free_port(), tmp_path / "state"
    cli = [sys.executable, "-m", "cloud_sync.register.cli", "--state", str(state)]
    proc = subprocess.Popen([*cli, "serve", "--port", str(port)], stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "register listening" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert ready.wait(60)
        h = subprocess.run([*cli, "household", "create", "Pommi"], check=True, capture_output=True, text=True)
        household = h.stdout.strip()
        t = subprocess.run([*cli, "enroll-token", "--household", household], check=True, capture_output=True, text=True)
        url, d = f"https://127.0.0.1:{port}", tmp_path / "hub"
        resp = enroll(url, t.stdout.strip(), d, ca_file=state / "ca.crt")
        hub = HubIdentity(resp.hub_id, household, d / "hub.crt", d / "hub.key", d / "register-ca.crt", d)
        yield url, state, proc.pid, hub
    finally:
        proc.terminate()
        proc.wait(30)


def test_100_concurrent_bombs_stay_within_the_memory_budget(
    register_process: tuple[str, Path, int, HubIdentity],
) -> None:
    url, _, pid, hub = register_process
    session = hub.session()
    first = session.post(f"{url}/v1/ingest/readings", data=batch(hub, "readings", range(1, 3)), headers=INGEST_HEADERS)
    assert first.status_code == 200
    baseline = _rss_kib(pid, "VmRSS")
    bomb = _bomb(p.MAX_INGEST_DECOMPRESSED_BYTES + (1 << 20))
    assert len(bomb) < 32 * 1024

    def fire(_: int) -> tuple[int, str | None]:
        s = hub.session()
        try:
            r = s.post(f"{url}/v1/ingest/readings", data=bomb, headers=INGEST_HEADERS, timeout=120)
            return r.status_code, r.headers.get("Retry-After")
        finally:
            s.close()

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(fire, range(100)))
    statuses = {code for code, _ in results}
    assert statuses <= {413, 503}, results
    assert all(after == "1" for code, after in results if code == 503)
    peak = _rss_kib(pid, "VmHWM")
    print(f"register RSS {baseline // 1024} MiB before, peak {peak // 1024} MiB under 100 concurrent bombs")
    assert peak - baseline < 200 * 1024, f"peak RSS {peak // 1024} MiB, {(peak - baseline) // 1024} MiB over baseline"
    # The budget is given back: an honest batch goes through afterwards.
    after = session.post(f"{url}/v1/ingest/readings", data=batch(hub, "readings", range(3, 5)), headers=INGEST_HEADERS)
    assert after.status_code == 200 and after.json()["acked_seq"] == 4


def test_the_budget_refuses_with_503_and_gives_everything_back(register: RunningRegister) -> None:
    hub = register.enroll()
    reg_budget = _app_budget(register)
    assert reg_budget.used == 0
    r = post(register, hub.session(), "readings", batch(hub, "readings", range(1, 4)))
    assert r.status_code == 200
    _until_returned(reg_budget)  # every lease returned (just after the reply was sent)
    refused_before = reg_budget.refused
    reg_budget.limit = 1024  # a budget smaller than one body: refused, nothing held afterwards
    try:
        r = post(register, hub.session(), "readings", batch(hub, "readings", range(4, 200)))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and error_of(r) == "busy"
    finally:
        reg_budget.limit = register.settings.body_budget_bytes
    assert reg_budget.refused == refused_before + 1
    _until_returned(reg_budget)


def _until_returned(budget: Any) -> None:
    deadline = time.monotonic() + 10
    while budget.used != 0:
        assert time.monotonic() < deadline, f"{budget.used} bytes of the body budget still held"
        time.sleep(0.01)


def _app_budget(register: RunningRegister) -> Any:
    server = register._server
    assert server is not None
    app = server.config.app
    return app.state.budget
