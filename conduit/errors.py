"""Errors the rules raise; each carries what a caller needs to answer (HTTP now, SMTP later).

One handler in ``conduit.api.errors`` maps them to the spec's Error body.
"""

from __future__ import annotations


class ConduitError(Exception):
    """Base of every expected failure: an HTTP status, a snake_case code and a sentence."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(ConduitError):
    status = 404
    code = "not_found"


class Conflict(ConduitError):
    status = 409
    code = "conflict"


class Invalid(ConduitError):
    """Input that is well-formed JSON but breaks a rule; ``field`` names the culprit."""

    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class Unauthorized(ConduitError):
    status = 401
    code = "unauthorized"


class Throttled(ConduitError):
    """Too many attempts; ``retry_after`` is in whole seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class AuthFailed(Unauthorized):
    """A failed authentication attempt whose bookkeeping (throttle count, audit entry) must
    be committed even though the request fails: the request boundary commits before answering."""

    keep_changes = True


class Unavailable(ConduitError):
    """The request is sound but cannot be served now (a resource limit of the server)."""

    status = 503
    code = "unavailable"


class Forbidden(ConduitError):
    status = 403
    code = "forbidden"


class Gone(ConduitError):
    status = 410
    code = "gone"
