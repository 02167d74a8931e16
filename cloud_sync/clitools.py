"""What the two command-line tools (``kotihub``, ``kotihub-register``) share: the version they print and a quiet end
when their reader goes away or the person presses Ctrl-C. It imports nothing of kotihub, so both sides of the wire
may use it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_BROKEN_PIPE = 141
"""What a shell reports for a command stopped by SIGPIPE (the reader, e.g. ``head``, went away)."""
EXIT_INTERRUPTED = 130
"""What a shell reports for a command stopped by Ctrl-C (SIGINT)."""


def version() -> str:
    """The installed package's version, for ``--version``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("kotihub")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def run(main: Callable[[T], int], argv: T) -> int:
    """``main(argv)``, ending quietly with :data:`EXIT_BROKEN_PIPE` when stdout's reader has gone
    (``kotihub devices | head -1``) instead of a BrokenPipeError traceback, now or when Python flushes at exit, and
    with :data:`EXIT_INTERRUPTED` on Ctrl-C."""
    try:
        try:
            return main(argv)
        finally:  # also after --help and --version (SystemExit): a closed pipe shows up here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # Ctrl-C: the person asked it to stop; a traceback would read as a crash
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
