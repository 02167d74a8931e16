"""Reading a child process's output in the background, so a test can wait for a line without a sleep."""

from __future__ import annotations

import threading
from typing import IO


class LineWatcher:
    """Collects the lines of ``stream`` in a thread; ``seen`` is set once a line contains ``marker``."""

    def __init__(self, stream: IO[str], marker: str) -> None:
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._stream, self._marker = stream, marker
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))
            if self._marker in line:
                self.seen.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
