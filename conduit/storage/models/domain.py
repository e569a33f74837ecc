from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, Timestamps, id_column


class Domain(Timestamps, Base):
    """A claim on an email domain, or (account_id NULL, is_public) an operator's shared domain.

    Several accounts may claim one name; only one row per name can be verified (partial
    unique index), and verifying removes the other claims.
    """

    __tablename__ = "domains"
    __table_args__ = (
        UniqueConstraint("account_id", "name", name="uq_domains_account_name"),
        Index("uq_domains_verified_name", "name", unique=True,
              postgresql_where=text("verified"), sqlite_where=text("verified")),
    )

    id: Mapped[str] = id_column()
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(253), index=True)
    verification_token: Mapped[str] = mapped_column(String(100), default="")
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
