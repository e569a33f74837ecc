from __future__ import annotations

from sqlalchemy import Float, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base


class RateBucket(Base):
    """A webhook's token bucket for ``rate_limit``, shared by every worker through the database.

    ``updated_ts`` is Unix time in seconds (a float) so the refill can be computed in one portable
    UPDATE on SQLite and PostgreSQL alike.
    """

    __tablename__ = "rate_buckets"

    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_ts: Mapped[float] = mapped_column(Float)
