from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, Timestamps, id_column


class SmtpPolicy(Timestamps, Base):
    """Who may send to a webhook: source networks, SMTP AUTH, SPF and DKIM requirements, and
    what rspamd's verdict decides (``spam_action``, ``spam_threshold``).

    The list fields are stored normalised, comma-separated; the SMTP password as Argon2id.
    """

    __tablename__ = "smtp_policies"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_smtp_policies_account_name"),)

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    allowed_source_ips: Mapped[str] = mapped_column(Text, default="")
    allowed_spf_domains: Mapped[str] = mapped_column(Text, default="")
    allowed_dkim_domains: Mapped[str] = mapped_column(Text, default="")
    require_smtp_auth: Mapped[bool] = mapped_column(Boolean, default=False)
    require_spf: Mapped[bool] = mapped_column(Boolean, default=False)
    require_dkim: Mapped[bool] = mapped_column(Boolean, default=False)
    smtp_username: Mapped[str] = mapped_column(String(100), default="")
    smtp_password_hash: Mapped[str] = mapped_column(String(200), default="")
    spam_action: Mapped[str] = mapped_column(String(16), default="deliver", server_default="deliver")
    spam_threshold: Mapped[float | None] = mapped_column(Float, default=None)
