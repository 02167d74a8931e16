"""A private PostgreSQL 15 cluster on a free 127.0.0.1 port, started once per test session.

Tests run as root and PostgreSQL refuses root, so the cluster runs as the ``postgres`` system user (created by
the Debian package) in a temporary directory it owns. Fixtures:

* ``postgres`` — the running cluster (:class:`PostgresCluster`);
* ``postgres_url`` — a fresh, empty database on it for one test (``postgresql+psycopg://…``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    directory: Path
    port: int

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            # wal_recycle=off as docs/register.md prescribes: a WAL segment the register's scrub retires is removed,
            # not renamed for reuse with its old contents (the forensic test scans the data directory).
            f"-p {self.port} -h 127.0.0.1 -k {self.directory} -c fsync=on -c max_connections=200 -c wal_recycle=off",
            "start",
        )

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def admin_dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def retire_wal(self) -> None:
        """Writes every change back and removes the WAL segments that logged it (``wal_recycle=off``), as the
        register's scrub does."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")


def start_cluster() -> PostgresCluster:
    directory = Path(tempfile.mkdtemp(prefix="kotihub-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(directory, pg.pw_uid, pg.pw_gid)
    cluster = PostgresCluster(directory=directory, port=free_port())
    # trust on 127.0.0.1 only: a throwaway cluster reachable from this machine alone.
    cluster._run(
        str(PG_BIN / "initdb"),
        "-D",
        str(directory / "data"),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
    )
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)
