from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class AuthAttempt(Base):
    """One counted attempt (a failed sign-in, a bad TOTP code, a reset request) for throttling.

    Kept in the database so every API node sees the same counts.
    """

    __tablename__ = "auth_attempts"
    __table_args__ = (Index("ix_auth_attempts_key_created", "key", "created_at"),)

    id: Mapped[str] = id_column()
    key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime]
