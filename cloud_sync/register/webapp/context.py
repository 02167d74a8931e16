"""What every page module gets: the registry, the settings, the templates, a clock and the sign-in rate limits."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from cloud_sync.register.ratelimit import Limiter
from cloud_sync.register.registry import Registry
from cloud_sync.register.settings import Settings
from cloud_sync.register.watching import Watching

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
    watched: Watching | None = None
    """Which households have the app open (:mod:`cloud_sync.register.watching`); None: pages mark nothing."""
    wake: Callable[[str], None] = lambda key: None
    """Wakes long-polls in this process (the app's :class:`~cloud_sync.register.wakeups.Wakeups`)."""

    @classmethod
    def create(
        cls,
        reg: Registry,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        watched: Watching | None = None,
        wake: Callable[[str], None] | None = None,
    ) -> WebContext:
        templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        context = cls(reg=reg, settings=settings, templates=templates, clock=clock, watched=watched)
        return context if wake is None else replace(context, wake=wake)

    async def watching(self, household_id: str) -> None:
        """A page showing the household's readings is open: its hubs send readings within seconds for a while
        (:mod:`cloud_sync.register.watching`; on the register's own clock, whatever ``clock`` the pages use)."""
        if self.watched is None or (marked := self.watched.mark(household_id)) is None:
            return  # marked less than a minute ago: nothing to announce
        until, wake_here = marked
        if wake_here is not None:
            self.wake(wake_here)
        if self.watched.announces:  # to other processes (PostgreSQL); on SQLite there are none
            await run_in_threadpool(self.watched.announce, household_id, until)

    @property
    def origin(self) -> str:
        return public_url(self.settings)

    @property
    def rp_id(self) -> str:
        return urlsplit(self.origin).hostname or "localhost"
