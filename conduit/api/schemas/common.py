from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# RFC 3339 UTC with a Z, whole seconds: 2026-04-02T12:00:00Z
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-04-02T12:00:00Z"]})]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omittable(description: str, example: Any, **kwargs: Any) -> Any:
    """A request field that may be left out but is never null. Left out, it keeps its value (an
    update) or takes the default the description names (a create); the service receives only the
    fields sent (``model_dump(exclude_unset=True)``). The schema says "not required", with no
    default of null: ``null`` is refused like any other value of the wrong type."""
    return Field(default=None, description=description, examples=[example], json_schema_extra=_no_default,
                 **kwargs)


def described(description: str, example: Any, **kwargs: Any) -> Any:
    """A property with its description and one example, as every property of the document has."""
    return Field(description=description, examples=[example], **kwargs)


class Model(BaseModel):
    """A response read from an ORM row."""

    model_config = ConfigDict(from_attributes=True)


def _storable(value: Any, where: str = "") -> None:
    """Raise unless every string in ``value`` can be hashed, logged and stored.

    JSON lets a string hold a NUL (which PostgreSQL refuses in text) or a lone UTF-16 surrogate
    such as "\\ud800" (which no UTF-8 encoder accepts); either would otherwise fail deep inside a
    service as a 500. The error names the field (``where``).
    """
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError("invalid_text", "{where}: text must not contain lone surrogates",
                                      {"where": where or "body"}) from None
        if "\x00" in value:
            raise PydanticCustomError("invalid_text", "{where}: text must not contain NUL characters",
                                      {"where": where or "body"})
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            _storable(key, where or "body")
            _storable(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{where}[{index}]")


class RequestBody(BaseModel):
    """Base of every request body: its text must be storable (see ``_storable``), and a field it
    does not have is refused (422 naming it) rather than ignored: a misspelt field would
    otherwise be lost without a word."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        _storable(data)
        return data


class FieldError(BaseModel):
    field: str = described("The field, as a dotted path into the request (`custom_headers.X-Key`); `body` for the "
                       "body as a whole.", "target_url")
    error: str = described("What is wrong with it.", "is required")


class Error(BaseModel):
    """Every error answer. Beyond the reference: ``details`` on request validation errors."""

    code: str = described("Stable, machine-readable error code (`validation_error`, `invalid_credentials`, "
                      "`email_taken`, `not_found`, `too_many_requests`, …).", "validation_error")
    error: str = described("One sentence for people: the field and the problem.", "target_url is required")
    details: list[FieldError] = omittable(
        "Only on `422 validation_error` answers to a request that does not fit the schema: every problem, one "
        "entry per field (`error` describes the first).", [{"field": "target_url", "error": "is required"}])


class PingResponse(BaseModel):
    status: str = described("Always `ok`.", "ok")
