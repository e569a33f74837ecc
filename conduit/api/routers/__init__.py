"""One router per group of the API reference."""

from __future__ import annotations

from typing import Any

from conduit.api.schemas.common import Error

_DESCRIPTIONS = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    410: "Gone", 422: "Validation error", 429: "Too many attempts", 503: "Unavailable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the Error responses of an operation (422 always: bad bodies)."""
    return {status: {"model": Error, "description": _DESCRIPTIONS[status]} for status in sorted({*statuses, 422})}
