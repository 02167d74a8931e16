"""Jobs: long operations (erasure, export, a retention run) that the CLI follows with a progress bar."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.privacy import ExportProgress

log = logging.getLogger(__name__)


@dataclass
class Job:
    kind: str
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    step: str = ""
    finished: bool = False
    error: str | None = None
    result: Any = None
    progress: ExportProgress | None = None
    task: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        done, total = (self.progress.done, self.progress.total) if self.progress else (self.done, self.total)
        return {
            "id": self.job_id,
            "kind": self.kind,
            "done": done,
            "total": total,
            "step": self.step,
            "finished": self.finished,
            "error": self.error,
            "result": self.result,
        }


class Jobs:
    """The daemon's jobs, run as tasks of its TaskGroup; a failed job reports its error and the daemon goes on."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.group: asyncio.TaskGroup | None = None

    def start(self, kind: str, factory: Callable[[], Awaitable[Any]], job: Job | None = None) -> Job:
        assert self.group is not None
        job = job or Job(kind)
        self.jobs = {k: v for k, v in self.jobs.items() if not v.finished or time.time() - v.started < 3600}
        self.jobs[job.job_id] = job

        async def run() -> None:
            try:
                job.result = await factory()
            except Exception as exc:  # reported to whoever follows the job; the daemon goes on
                log.exception("%s failed", kind)
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.finished = True

        job.task = self.group.create_task(run(), name=f"job:{kind}")
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self, kind: str) -> bool:
        return any(j.kind == kind and not j.finished for j in self.jobs.values())

    def tasks(self) -> list[asyncio.Task[None]]:
        return [j.task for j in self.jobs.values() if j.task is not None]
