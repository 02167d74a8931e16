"""The household's app, served by the register under ``/app``: server-rendered pages (Jinja2), our own small
ES modules, passkey sign-in. Each page module under ``pages/`` brings its router, templates and texts.

In the register's app::

    app.include_router(webapp.router(WebContext.create(reg, settings)))
    app.mount(webapp.STATIC_PATH, webapp.static_files())
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    # Not at run time: the registry imports this package's tables (webapp.schema), and the context the registry.
    from cloud_sync.register.webapp.context import WebContext

STATIC_PATH: Final = "/app/static"
STATIC_DIR: Final = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR", "STATIC_PATH", "router", "static_files"]


def page_modules() -> list[str]:
    """Every module under ``pages/`` (each defines ``router(ctx)``), in name order."""
    from cloud_sync.register.webapp import pages

    return sorted(f"{pages.__name__}.{m.name}" for m in pkgutil.iter_modules(pages.__path__))


def router(ctx: WebContext) -> APIRouter:
    """All of the app's pages, each request carrying ``ctx`` in ``request.state.webapp``."""

    def bind(request: Request) -> None:
        request.state.webapp = ctx

    r = APIRouter(dependencies=[Depends(bind)], include_in_schema=False)
    for name in page_modules():
        page: APIRouter = importlib.import_module(name).router(ctx)
        # Pages are not the register's API: out of its OpenAPI document (which reads each included route's flag).
        for route in page.routes:
            if isinstance(route, APIRoute):
                route.include_in_schema = False
        r.include_router(page)
    return r


def static_files() -> StaticFiles:
    """Our CSS and ES modules, and ``vendor/`` (filled from node_modules by scripts/lib.sh)."""
    return StaticFiles(directory=str(STATIC_DIR))
