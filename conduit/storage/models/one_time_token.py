from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class OneTimeToken(Base):
    """A single-use secret with an expiry: TOTP sign-in challenges, password resets, backup codes.

    ``purpose`` tells them apart; only the SHA-256 of the secret is stored.
    """

    __tablename__ = "one_time_tokens"

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
