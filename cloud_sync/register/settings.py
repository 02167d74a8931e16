"""The register's settings: where it keeps its state and its policy numbers. No secrets live here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloud_sync import protocol as p
from cloud_sync.register.db import default_url

MIN_BODY_BUDGET = p.MAX_INGEST_COMPRESSED_BYTES + 2 * (p.MAX_INGEST_DECOMPRESSED_BYTES + 1)


@dataclass(frozen=True, kw_only=True)
class Settings:
    state_dir: Path
    """Holds the CA (0600 key), the server certificate, the SQLite database (default) and the blob store."""
    db_url: str | None = None
    """SQLAlchemy URL; default SQLite in ``state_dir``. PostgreSQL: ``postgresql+psycopg://…``."""
    retention_days: int = 183
    enroll_token_ttl_s: int = 600
    hub_cert_days: int = 397
    blob_dir: Path | None = None
    db_pool_size: int = 12
    """PostgreSQL connections each register process keeps open (SQLAlchemy ``pool_size``). Bulk ingest takes at most
    this many less two (:mod:`.lanegate`), never overflow, so its connections stay open across bursts."""
    db_max_overflow: int = 4
    """Connections a process may open beyond ``db_pool_size`` under a burst, closed again when returned (the other
    routes', when bulk ingest holds its share of the pool). A register
    of N workers needs up to N x (pool size + overflow) + N (their LISTEN connections) from PostgreSQL's
    ``max_connections``."""
    command_poll_interval_s: float = 2.0
    """How often a waiting long-poll re-reads the database, for commands queued by another process (the CLI)."""
    server_cert_days: int = 90
    """Lifetime of the TLS server certificate; it is re-issued in place once a third of it is left."""
    server_cert_check_s: float = 3600.0
    tls_handshake_timeout_s: float = 10.0
    """A connection that has not completed its TLS handshake by then is dropped."""
    first_request_timeout_s: float = 10.0
    """A connection whose first request head has not arrived by then is dropped."""
    max_connections_per_source: int = 256
    """Open connections allowed from one IP address (a household's hubs behind one NAT stay well below)."""
    max_anonymous_connections: int = 2048
    """Open connections without a client certificate (enrollment, apps, operators); hubs have their own room."""
    keep_alive_s: float = 35.0
    """How long an idle connection is kept between requests (long-polls last up to 30 s; keep-alive between them
    lets a hub reuse its TLS session)."""
    alarm_keep_alive_s: float = 180.0
    """How long a hub's idle connection whose last request was an alarm or an alarm ping
    (:data:`~cloud_sync.protocol.ALARM_PING_PATH`) is kept: hubs ping it (every 120 s by default) so that a smoke alarm
    finds it open. Only for connections with a client certificate; anonymous ones get ``keep_alive_s``."""
    body_budget_bytes: int = 160 * 1024 * 1024
    """Request bodies held at once, buffered and inflated, over all requests (beyond: 503 with Retry-After)."""
    auth_failure_burst: int = 20
    """Failed authentications allowed at once per source address (5x per household), refilled over 10 minutes."""
    enroll_burst: int = 10
    """Enrollment attempts allowed at once per source address (5x per household), refilled over 10 minutes."""
    bulk_ingest_limit: int = 2
    """Bulk ingest batches (events, readings, clips, diagnostics) a process runs in PostgreSQL at once; more wait
    their turn without holding a connection (never more than ``db_pool_size - 2``). Two let a process's own Python
    and its batches' database time overlap; each one more is one more PostgreSQL backend a smoke alarm's statements
    share the CPU with, and in every pair of fleet runs two gave both the shorter alarm p99 and at least as many
    readings stored as the pool's share did (docs/scale.md, "Two bulk batches a process"). Raise it for a database
    far enough away that its round trips, not its CPU, bound a batch."""
    alarm_port: int | None = None
    """The alarm listener's TCP port (``serve --alarm-port``): a process of its own serving only the alarm lane, which
    the main port announces to hubs (``Kotihub-Alarm-Url``). None: alarms go to the main port with everything."""
    bulk_nice: int = 10
    """With an alarm listener: how much the other register processes lower their own CPU priority (``os.nice``), so
    the listener runs ahead of bulk ingest when the CPU is short. 0 leaves them as they are."""
    readings_chunks: bool = True
    """Store readings that come many to a sensor in one batch (a hub catching up) as packed chunks (PostgreSQL;
    cloud_sync/register/chunks.py). On by default since the release after migration 0012: that release reads and
    erases chunks whether or not it writes them, so a rollback to it loses sight of nothing (docs/scale.md). Off
    (``serve --no-readings-chunks``) writes every reading as a row of ``readings``, as registers before."""
    public_url: str = ""
    """The register's URL as browsers see it (the app's WebAuthn origin; its host is the relying party id).
    Empty: ``KOTIHUB_REGISTER_PUBLIC_URL``, else ``https://localhost:8443``."""

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if not 1 <= self.enroll_token_ttl_s <= 86_400:
            raise ValueError("enroll_token_ttl_s must be between 1 and 86400")
        if not 2 <= self.server_cert_days <= 397:
            raise ValueError("server_cert_days must be between 2 and 397")
        if self.body_budget_bytes < MIN_BODY_BUDGET:
            raise ValueError(f"body_budget_bytes must be at least {MIN_BODY_BUDGET} (one ingest request at its limits)")
        if self.db_pool_size < 1 or self.db_max_overflow < 0:
            raise ValueError("db_pool_size must be at least 1 and db_max_overflow at least 0")
        if min(self.max_connections_per_source, self.max_anonymous_connections) < 1:
            raise ValueError("connection caps must be at least 1")
        if self.bulk_ingest_limit < 1:
            raise ValueError("bulk_ingest_limit must be at least 1")
        if self.alarm_port is not None and not 1 <= self.alarm_port <= 65_535:
            raise ValueError("alarm_port must be a TCP port (1-65535)")
        if not 0 <= self.bulk_nice <= 19:
            raise ValueError("bulk_nice must be between 0 and 19")
        timeouts = (self.tls_handshake_timeout_s, self.first_request_timeout_s, self.server_cert_check_s)
        if min(*timeouts, self.keep_alive_s, self.alarm_keep_alive_s) <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def database_url(self) -> str:
        return self.db_url or default_url(str(self.state_dir))

    @property
    def blob_path(self) -> Path:
        return self.blob_dir or self.state_dir / "blobs"
