"""The project's error hierarchy: every error says whether trying again can help."""

from __future__ import annotations


class KotihubError(Exception):
    """Base of every error the project raises on purpose."""


class TransientError(KotihubError):
    """May succeed if tried again later: a network blip, a full disk, a busy register."""


class ClipAborted(TransientError):
    """A clip was abandoned before it was sealed (restriction, shutdown, camera loss); nothing was kept."""


class PermanentError(KotihubError):
    """Will fail the same way again until something is changed by a person."""


class ConfigError(PermanentError):
    """A configuration problem; ``problems`` lists each as ``(key path, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems))


class MasterKeyError(PermanentError):
    """The master key is missing, malformed or not protected well enough."""


class DecryptError(PermanentError):
    """A record failed authentication: wrong key, tampered, moved, or its key was destroyed."""


class KeyDestroyedError(DecryptError):
    """The epoch key for a record was shredded by retention or erasure: the record is unrecoverable by design."""


class StoreError(KotihubError):
    """Base of store failures."""


class StoreFullError(StoreError, TransientError):
    """The disk is full: the write was not accepted. Back-pressure; nothing accepted before was lost."""


class StoreCorruptError(StoreError, PermanentError):
    """The database failed its integrity check."""


class SchemaTooNewError(StoreError, PermanentError):
    """The database was written by a newer kotihub; refusing to touch it."""


class StoreClosedError(StoreError, PermanentError):
    """The store was closed; the write was not accepted."""
