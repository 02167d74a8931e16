"""A real register over TLS on 127.0.0.1 for tests, and enrolled hub identities for the uplink's tests.

Fixtures:

* ``register`` — a register on SQLite (:class:`RunningRegister`);
* ``register_pg`` — the same on a fresh PostgreSQL database;
* ``register_any`` — parametrized over both (``sqlite``, ``postgresql``).

Typical use::

    def test_x(register):
        hub = register.enroll()                 # a new household, an enrolled hub: cert, key, CA files
        session = hub.session()                 # requests.Session with the client cert and CA set
        session.post(f"{register.url}/v1/ingest/readings", ...)
        assert register.items(hub.hub_id, "readings") == [(0, {...}), ...]
        register.stop(); register.start()       # same port, same state
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import memberlist as ml
from cloud_sync import protocol as p
from cloud_sync.enroll import enroll as hub_enroll
from cloud_sync.register import chunks, db, ingest, memberlog
from cloud_sync.register.auth import HubIdentity as Caller
from cloud_sync.register.registry import Registry
from cloud_sync.register.server import ReadyServer, build_config
from cloud_sync.register.settings import Settings
from household import edit
from household import keys as member_keys
from tests.support.postgres import free_port

ACTOR = "test:fixture"


@dataclass(frozen=True)
class HubIdentity:
    """An enrolled hub's files and ids."""

    hub_id: str
    household_id: str
    cert: Path
    key: Path
    ca: Path
    state_dir: Path

    def session(self) -> requests.Session:
        s = requests.Session()
        # Otherwise REQUESTS_CA_BUNDLE from the environment overrides ``verify`` set on a session.
        s.trust_env = False
        s.cert = (str(self.cert), str(self.key))
        s.verify = str(self.ca)
        return s


class RunningRegister:
    """A register served by uvicorn in a thread; ``stop()``/``start()`` keep the port and the state.

    Subclasses may override ``start()`` to wrap ``build_config(...).app`` (fault injection) as long as they set
    ``_server`` and ``_thread`` as this one does.
    """

    def __init__(self, state_dir: Path, db_url: str | None = None, **settings: Any) -> None:
        self.settings = Settings(state_dir=state_dir, db_url=db_url, **settings)
        self.port = free_port()
        self.registry: Registry | None = None
        self._server: ReadyServer | None = None
        self._thread: threading.Thread | None = None
        self.app: Any = None
        """The register's ASGI app while it runs (its ``state`` holds what the process keeps in memory)."""
        self._hubs = 0
        self.members: dict[str, list[member_keys.MemberKeys]] = {}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.settings.state_dir / "ca.crt"

    @property
    def reg(self) -> Registry:
        if self.registry is None:
            self.registry = Registry(self.settings)
        return self.registry

    def start(self) -> None:
        assert self._server is None, "already running"
        config = build_config(self.settings, port=self.port, registry=self.reg, graceful_s=1)
        self.app = config.app
        config.app = self.wrap_app(config.app)
        self._server = ReadyServer(config)
        self._thread = threading.Thread(target=self._server.run, name="register", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(30):
            raise RuntimeError("register did not start within 30 s")

    def wrap_app(self, app: Any) -> Any:
        """The ASGI app served: a test's register may put a wrapper of its own around the register's app."""
        return app

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("register did not stop within 30 s")
        self._server = self._thread = None

    def close(self) -> None:
        self.stop()
        if self.registry is not None:
            self.registry.close()
            self.registry = None

    # ------------------------------------------------------------------------------------------- helpers

    def create_household(self, name: str = "Testikoti") -> str:
        return self.reg.create_household(name, actor=ACTOR)

    def add_member(self, household_id: str, name: str = "Aino") -> tuple[str, str]:
        """Adds a member as the household does: keys made "on the member's device", a directory entry with the
        name, and a new version of the signed member list (the first member signs the first version and every
        later one). Returns ``(member_id, age identity secret)`` (the secret stays in the test)."""
        identity = pyrage.x25519.Identity.generate()
        mid = self.reg.add_member(household_id, name, str(identity.to_public()), actor=ACTOR).member_id
        member = member_keys.MemberKeys(mid, identity, Ed25519PrivateKey.generate())
        signers = self.members.setdefault(household_id, [])
        if not signers:
            signed = edit.genesis(household_id, member)
        else:
            latest = memberlog.entries(self.reg, household_id, after=0, limit=memberlog.MAX_PAGE)[-1]
            body, data = ml.open_signed(latest.signed)
            signed = edit.add(ml.Verified(latest.signed, body, data), member.entry, signers[0])
        memberlog.append(self.reg, household_id, signed, actor=ACTOR)
        signers.append(member)
        return member.member_id, str(member.identity)

    def pairing_code(self, household_id: str) -> str | None:
        """The code the first member's device shows; what a technician confirms at ``kotihub provision``."""
        signers = self.members.get(household_id)
        return signers[0].pairing_code if signers else None

    def enroll_token(self, household_id: str, ttl_s: int = 600) -> str:
        return self.reg.create_enroll_token(household_id, ttl_s=ttl_s, actor=ACTOR)

    def api_token(self, role: str, household_id: str | None = None) -> str:
        return self.reg.create_api_token(role, household_id, actor=ACTOR)

    def enroll(self, household_id: str | None = None, state_dir: Path | None = None) -> HubIdentity:
        """Enroll a new hub (in a new household unless given) through the real HTTPS enrollment."""
        h = household_id or self.create_household()
        self._hubs += 1
        d = state_dir or self.settings.state_dir.parent / f"hub{self._hubs}"
        code = self.pairing_code(h)
        resp = hub_enroll(self.url, self.enroll_token(h), d, ca_file=self.ca_file, pairing_code=code)
        return HubIdentity(
            hub_id=resp.hub_id,
            household_id=resp.household_id,
            cert=d / "hub.crt",
            key=d / "hub.key",
            ca=d / "register-ca.crt",
            state_dir=d,
        )

    def items(self, hub_id: str, lane: str) -> list[tuple[int, dict[str, Any]]]:
        return ingest.items(self.reg, hub_id, lane)

    def queue_command(
        self, household_id: str, kind: str, args: dict[str, Any] | None = None, hub_id: str | None = None
    ) -> list[str]:
        return self.reg.queue_command(household_id, kind, args or {}, hub_id=hub_id, actor=ACTOR)


def start_register(state_dir: Path, db_url: str | None = None, **settings: Any) -> RunningRegister:
    state_dir.mkdir(parents=True, exist_ok=True)
    r = RunningRegister(state_dir, db_url, **settings)
    r.start()
    return r


@pytest.fixture
def register(tmp_path: Path) -> Iterator[RunningRegister]:
    r = start_register(tmp_path / "register")
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def register_pg(tmp_path: Path, postgres_url: str) -> Iterator[RunningRegister]:
    r = start_register(tmp_path / "register", postgres_url)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def registry_pg_rows(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    """The register's registry alone (no server) on a PostgreSQL database of its own, with chunk writing off: every
    reading it takes is a row of ``readings``, as a register before chunks (tests of the rows, or comparing them
    with chunks)."""
    r = Registry(Settings(state_dir=tmp_path / "register", db_url=postgres_url, readings_chunks=False))
    try:
        yield r
    finally:
        r.close()


def hub_row(reg: Registry, hub_id: str, household_id: str, at: float) -> str:
    """Enrolls a hub by its row alone, with a certificate hash of zeros and no certificate (for tests calling the
    register's functions directly, as a hub whose certificate hashes so); returns that hash."""
    cert = "0" * 64
    with reg.engine.begin() as conn:
        conn.execute(db.hubs.insert().values(id=hub_id, household_id=household_id, cert_sha256=cert, enrolled_at=at))
    return cert


@pytest.fixture(params=["sqlite", "postgresql"])
def register_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningRegister]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    r = start_register(tmp_path / "register", url)
    try:
        yield r
    finally:
        r.close()


def store_as_rows(reg: Registry, hub: Caller, items: list[p.ReadingItem]) -> None:
    """``items`` ingested as a batch: rows on a register with chunk writing off (:func:`registry_pg_rows`)."""
    ingest.ingest(reg, hub, p.ReadingsBatch(hub_id=hub.hub_id, lane="readings", items=items))


def store_as_chunks(reg: Registry, hub: Caller, items: list[p.ReadingItem]) -> tuple[list[chunks.Chunk], int]:
    """Sensors with many readings of ``items`` written as chunks, the rest ingested as rows; returns the chunks and
    how many went as rows."""
    packed, rest = chunks.split(items, hub.hub_id, hub.household_id, time.time())
    with reg.engine.begin() as conn:
        assert chunks.available(conn)
        chunks.copy_chunks(conn, packed)
    if rest:
        store_as_rows(reg, hub, sorted(rest, key=lambda it: it.seq))
    return packed, len(rest)
