from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class Refusal(Base):
    """Mail refused at SMTP time for one of an account's addresses or domains: the reply the
    sender got, and why. The body is never kept. At most CONDUIT_REFUSALS_PER_HOUR rows per
    account and hour (``RefusalWindow`` counts the rest)."""

    __tablename__ = "refusals"
    __table_args__ = (Index("ix_refusals_account_refused", "account_id", "refused_at", "id"),)

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    refused_at: Mapped[datetime] = mapped_column(index=True)
    # unknown_recipient | inactive_webhook | policy | spam | too_big | too_many_recipients
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")  # the failed check's why, for a policy refusal
    reply_code: Mapped[int] = mapped_column(Integer)
    reply_text: Mapped[str] = mapped_column(String(512))
    sender: Mapped[str] = mapped_column(String(320), default="")
    recipient: Mapped[str] = mapped_column(String(320))
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    webhook_id: Mapped[str | None] = mapped_column(String(40), default=None)  # no key: kept after a webhook goes


class RefusalWindow(Base):
    """How many refusals of one account an hour (``window_start``) recorded, and how many it
    dropped past the cap."""

    __tablename__ = "refusal_windows"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    recorded: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)
