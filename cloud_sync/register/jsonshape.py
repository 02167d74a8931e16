"""Depth and size limits on every JSON value the register accepts, free-form fields (command ``args``, a result's
``detail``) included: a bounded body can still nest a thousand levels deep, which no handler, database or later
reader should have to survive. Violations are 422 naming the path, never 500."""

from __future__ import annotations

from typing import Any

import msgspec

from cloud_sync.register.errors import Invalid

MAX_DEPTH = 16
"""Containers nested in one another, the body itself counting as the first."""
MAX_STRING = 64 * 1024
MAX_ENTRIES = 10_000
"""Items of one list or members of one object."""


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`Invalid` (422) if ``value`` (decoded JSON, structs included) breaks a limit."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if len(v) > MAX_STRING:
                raise Invalid(f"{path}: strings are limited to {MAX_STRING} characters", code="too_long")
            continue
        if isinstance(v, msgspec.Struct):
            items: Any = ((f.name, getattr(v, f.name)) for f in msgspec.structs.fields(v))
            n = len(msgspec.structs.fields(v))
        elif isinstance(v, dict):
            items, n = v.items(), len(v)
        elif isinstance(v, list | tuple):
            items, n = ((f"[{i}]", x) for i, x in enumerate(v)), len(v)
        else:
            continue
        if depth + 1 > max_depth:
            raise Invalid(f"{path}: nested deeper than {max_depth} levels", code="too_deep")
        if n > MAX_ENTRIES:
            raise Invalid(f"{path}: more than {MAX_ENTRIES} entries", code="too_many")
        for key, child in items:
            if isinstance(v, dict) and isinstance(key, str) and len(key) > MAX_STRING:
                raise Invalid(f"{path}: keys are limited to {MAX_STRING} characters", code="too_long")
            sep = "" if str(key).startswith("[") else "."
            stack.append((child, f"{path}{sep}{key}", depth + 1))
