from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# RFC 3339 UTC with a Z, whole seconds: 2026-04-02T12:00:00Z
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-04-02T12:00:00Z"})]


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
    """Base of every request body: its text must be storable (see ``_storable``)."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        _storable(data)
        return data


class Error(BaseModel):
    code: str
    error: str


class PingResponse(BaseModel):
    status: str
