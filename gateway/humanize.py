"""How the hub's tools write sizes, times and counts for people, one way everywhere (status and selftest agree)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float) -> str:
    """Bytes in binary units, as ``df -h`` counts them: ``1.5 GiB``."""
    for unit in _BINARY_UNITS[:-1]:
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} {_BINARY_UNITS[-1]}"


def when(ts: float | None) -> str:
    """A Unix time as UTC ISO 8601 (``2026-11-29 01:45:21Z``), or ``-`` when there is none."""
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def counts(values: Mapping[str, object]) -> str:
    """``{"readings": 3, "clip_files": 0}`` → ``3 readings, 0 clip files``."""
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in values.items()) or "nothing"
