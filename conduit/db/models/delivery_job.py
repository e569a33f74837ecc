from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.base import Base, id_column


class DeliveryJob(Base):
    """One message to deliver to one webhook. The job id is the stable ``webhook-id`` header.

    A worker takes a job by setting ``locked_until`` (a lease); a worker that dies loses the
    lease and the job is taken again when it expires.
    """

    __tablename__ = "delivery_jobs"
    __table_args__ = (Index("ix_delivery_jobs_due", "status", "next_attempt_at"),)

    id: Mapped[str] = id_column()
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    rcpt_to: Mapped[str] = mapped_column(String(320))
    # queued | delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
