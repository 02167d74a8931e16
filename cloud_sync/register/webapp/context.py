"""What every page module gets: the registry, the settings, the templates, a clock and the sign-in rate limits."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from cloud_sync.register import watching
from cloud_sync.register.ratelimit import Limiter
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"


def public_url(settings: Settings) -> str:
    """The register's public URL, which the browser sees: the WebAuthn origin, its host the relying party id."""
    url = settings.public_url or os.environ.get("KOTIHUB_REGISTER_PUBLIC_URL", "") or "https://localhost:8443"
    return url.rstrip("/")


@dataclass(frozen=True)
class WebContext:
    reg: Registry
    settings: Settings
    templates: Jinja2Templates
    clock: Callable[[], float] = time.time
    limiter: Limiter = field(default_factory=Limiter)
    """Sign-in attempts per source address (and per member for one-time links)."""
    wake: Callable[[str], None] = lambda hub_id: None
    """Wakes a hub's command long-poll in this process (the app's :class:`~cloud_sync.register.wakeups.Wakeups`)."""

    @classmethod
    def create(
        cls,
        reg: Registry,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        wake: Callable[[str], None] | None = None,
    ) -> WebContext:
        templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        if wake is None:
            return cls(reg=reg, settings=settings, templates=templates, clock=clock)
        return cls(reg=reg, settings=settings, templates=templates, clock=clock, wake=wake)

    async def watching(self, household_id: str) -> None:
        """A page showing the household's readings is open: its hubs send readings within seconds for a while
        (:mod:`cloud_sync.register.watching`; on the register's own clock, whatever ``clock`` the pages use)."""
        for hub_id in await run_in_threadpool(watching.watch, self.reg, household_id):
            self.wake(hub_id)

    @property
    def origin(self) -> str:
        return public_url(self.settings)

    @property
    def rp_id(self) -> str:
        return urlsplit(self.origin).hostname or "localhost"
