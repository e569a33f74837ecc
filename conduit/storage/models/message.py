from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class Message(Base):
    """A message accepted over SMTP: its raw bytes and envelope, kept for
    CONDUIT_MESSAGE_RETENTION_DAYS after receipt (for the Messages API and redelivery), and in any
    case until no queued job needs it."""

    __tablename__ = "messages"

    id: Mapped[str] = id_column()
    received_at: Mapped[datetime] = mapped_column(index=True)
    mail_from: Mapped[str] = mapped_column(String(998), default="")
    rcpt_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    remote_ip: Mapped[str] = mapped_column(String(64), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_user: Mapped[str | None] = mapped_column(String(100), default=None)
    size: Mapped[int] = mapped_column(Integer, default=0)
    # SPF / DKIM / DMARC results as evaluated at receipt, for the payload's "auth" field.
    auth_results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # rspamd's verdict at receipt, for the payload's "spam" field; null when no spam check ran.
    spam: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # The decoded Subject header (at most 998 characters), for the Messages API's filter.
    subject: Mapped[str] = mapped_column(String(998), default="", server_default="")
