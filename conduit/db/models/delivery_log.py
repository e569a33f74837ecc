from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.base import Base, id_column


class DeliveryLog(Base):
    """One delivery attempt (or one SMTP-time rejection, http_status 0) for a webhook."""

    __tablename__ = "delivery_logs"
    __table_args__ = (Index("ix_delivery_logs_webhook_attempted", "webhook_id", "attempted_at"),)

    id: Mapped[str] = id_column()
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # delivered | failed | retrying | rejected
    status: Mapped[str] = mapped_column(String(16))
    attempted_at: Mapped[datetime]
    http_status: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    smtp_message_id: Mapped[str] = mapped_column(String(100), default="")
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
