"""Rendering a page: the template gets the language, ``t``, the CSRF token and the navigation, and the response
the app's security headers."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from cloud_sync.register.webapp.context import WebContext
from cloud_sync.register.webapp.i18n import pick_lang, t
from cloud_sync.register.webapp.session import MemberSession

IMPORTMAP: Final = Path(__file__).parent / "static" / "vendor" / "importmap.json"
"""Written by scripts/vendor.mjs (``ensure_npm_packages``): where the browser finds the vendored packages."""


def _csp(script_hashes: str = "") -> str:
    # Our own scripts and styles only (and the import map, by its hash): no other inline script, nothing from
    # elsewhere, no framing.
    return (
        f"default-src 'self'; script-src 'self'{script_hashes}; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


@functools.cache
def _importmap(mtime_ns: int) -> tuple[str, str]:
    """``(import map JSON, its CSP source)`` for the file as of ``mtime_ns``."""
    text = IMPORTMAP.read_text().strip()
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f" 'sha256-{digest}'"


def importmap() -> tuple[str, str]:
    """The import map to inline in a page and the CSP source allowing it; empty when nothing is vendored (the pages
    that need no package still work)."""
    try:
        return _importmap(IMPORTMAP.stat().st_mtime_ns)
    except FileNotFoundError:
        return "", ""


SECURITY_HEADERS: Final = {
    "Content-Security-Policy": _csp(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, order=True)
class NavItem:
    order: int
    path: str
    key: str
    """i18n key of its label."""


_NAV: list[NavItem] = []


def register_nav(path: str, key: str, order: int) -> None:
    """A page module's entry in the navigation (each adds its own; lower ``order`` first)."""
    item = NavItem(order, path, key)
    clash = [i.path for i in _NAV if i.order == order and i.path != path]
    if clash:  # two pages at one place would swap at random between processes
        raise ValueError(f"navigation order {order} of {path} is taken by {clash[0]}")
    if item not in _NAV:
        _NAV.append(item)
        _NAV.sort()


def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request, session: MemberSession | None, template: str, *, status_code: int = 200, **values: Any
) -> HTMLResponse:
    ctx: WebContext = request.state.webapp
    lang = session.lang if session is not None else pick_lang(request)
    values.setdefault("title_key", "app.name")
    imports, script_src = importmap()
    response = ctx.templates.TemplateResponse(
        request,
        template,
        {
            "lang": lang,
            "t": partial(t, lang=lang),
            "csrf": session.csrf_token if session is not None else "",
            "session": session,
            "nav": list(_NAV) if session is not None else [],
            "path": request.url.path,
            "importmap": imports,
            **values,
        },
        status_code=status_code,
    )
    secure(response)
    response.headers["Content-Security-Policy"] = _csp(script_src)
    return response
