from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, id_column


class DeliveryJob(Base):
    """One message to deliver to one webhook. The job id is the stable ``webhook-id`` header.

    A worker takes a job by setting ``locked_until`` (a lease), renewed while its attempt runs; a
    worker that dies stops renewing and the job is taken again when the lease expires. Only a
    queued job has a lease, so the jobs under one are few: ``ix_delivery_jobs_leased`` finds them,
    per webhook, for the per-webhook cap (CONDUIT_WEBHOOK_CONCURRENCY).
    """

    __tablename__ = "delivery_jobs"
    __table_args__ = (Index("ix_delivery_jobs_due", "status", "next_attempt_at"),
                      Index("ix_delivery_jobs_leased", "webhook_id", "locked_until",
                            sqlite_where=text("locked_until IS NOT NULL"),
                            postgresql_where=text("locked_until IS NOT NULL")))

    id: Mapped[str] = id_column()
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    rcpt_to: Mapped[str] = mapped_column(String(320))  # the first of ``recipients``
    # The message's recipients routed to this webhook: the payload's envelope lists only these.
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # queued | delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
