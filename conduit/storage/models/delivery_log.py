from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class DeliveryLog(Base):
    """One delivery attempt (or one SMTP-time rejection, http_status 0) for a webhook."""

    __tablename__ = "delivery_logs"
    __table_args__ = (Index("ix_delivery_logs_webhook_attempted", "webhook_id", "attempted_at"),
                      Index("ix_delivery_logs_smtp_message_id", "smtp_message_id"))

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
    response_excerpt: Mapped[str] = mapped_column(Text, default="")  # the first KiB of the receiver's body
    # The receiver's headers that explain a failure; None when absent (or no response).
    response_retry_after: Mapped[str | None] = mapped_column(String(200), default=None)
    response_content_type: Mapped[str | None] = mapped_column(String(200), default=None)

    @property
    def response_headers(self) -> dict[str, str]:
        """The kept headers by their HTTP names, those the receiver sent."""
        kept = {"Retry-After": self.response_retry_after, "Content-Type": self.response_content_type}
        return {name: value for name, value in kept.items() if value is not None}
