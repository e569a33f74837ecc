from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, Timestamps, id_column


class Account(Timestamps, Base):
    __tablename__ = "accounts"

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Bumped on password change / sign-out everywhere: access tokens carry it and die with it.
    token_generation: Mapped[int] = mapped_column(Integer, default=0)
    # TOTP secret, encrypted with a key derived from CONDUIT_SECRET_KEY; set by setup.
    totp_secret: Mapped[str | None] = mapped_column(Text, default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last accepted 30-second step: a code of the same or an earlier step is a replay.
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set by `conduit accounts disable`: no sign-in, no token works, mail is refused at RCPT.
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
