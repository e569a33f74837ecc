from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.base import Base, id_column


class Message(Base):
    """A message accepted over SMTP: its raw bytes and envelope, kept until its jobs are done
    (and CONDUIT_KEEP_RAW_DAYS more days, for redelivery)."""

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
    raw: Mapped[bytes] = mapped_column(LargeBinary)
