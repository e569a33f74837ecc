from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# RFC 3339 UTC with a Z, whole seconds: 2026-04-02T12:00:00Z
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-04-02T12:00:00Z"})]


class Model(BaseModel):
    """A response read from an ORM row."""

    model_config = ConfigDict(from_attributes=True)


class Error(BaseModel):
    code: str
    error: str


class PingResponse(BaseModel):
    status: str
