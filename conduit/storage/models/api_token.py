from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class ApiToken(Base):
    """A long-lived API token, stored as its SHA-256; revoking deletes the row."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
