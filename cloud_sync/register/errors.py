"""The register's own small error hierarchy; each error knows the HTTP status and machine code it maps to."""

from __future__ import annotations


class RegisterError(Exception):
    """Base: ``status`` and ``code`` become the reply; the message says exactly what was wrong."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class Unauthenticated(RegisterError):
    status = 401
    code = "unauthenticated"


class Forbidden(RegisterError):
    status = 403
    code = "forbidden"


class NotFound(RegisterError):
    status = 404
    code = "not_found"


class Conflict(RegisterError):
    status = 409
    code = "conflict"


class Invalid(RegisterError):
    status = 422
    code = "invalid"


class TooLarge(RegisterError):
    status = 413
    code = "too_large"


class Busy(RegisterError):
    """The register is at a capacity limit; ``retry_after`` (seconds) goes into the ``Retry-After`` header."""

    status = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimited(Busy):
    status = 429
    code = "rate_limited"
