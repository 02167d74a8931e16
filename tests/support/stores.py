"""Helpers to open a real store in tests (a real SQLite file in a temporary directory)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway import crypto
from gateway.store import Store


def open_store(state_dir: Path, key: bytes | None = None, **kw: Any) -> Store:
    kw.setdefault("commit_interval", 0.01)
    return Store.open(state_dir, key or os.urandom(32), crypto.Algorithm.CHACHA20_POLY1305, **kw)


def db_files(state_dir: Path) -> list[Path]:
    """The database and its side files, as they are on disk now."""
    return [p for p in state_dir.iterdir() if p.name.startswith("kotihub.db")]
