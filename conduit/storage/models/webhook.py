from __future__ import annotations

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.storage.base import Base, Timestamps, id_column


class Webhook(Timestamps, Base):
    """An address that receives mail and the HTTP endpoint its messages are posted to.

    ``address`` is unique service-wide, lower-case, ``local@domain`` or ``*@domain`` (catch-all).
    Deleting its domain deletes the webhook (foreign key cascade).
    """

    __tablename__ = "webhooks"

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(320), unique=True)
    target_url: Mapped[str] = mapped_column(String(2048))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    custom_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    payload_template: Mapped[str | None] = mapped_column(Text, default=None)
    rate_limit: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    smtp_security_policy_id: Mapped[str | None] = mapped_column(
        ForeignKey("smtp_policies.id", ondelete="SET NULL"), index=True, default=None)
    # queued: the worker delivers after the SMTP 250. synchronous: the SMTP server makes the first
    # attempt before answering DATA, and the receiver's answer is the reply (docs/api-decisions.md).
    delivery_mode: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    sync_timeout_ms: Mapped[int] = mapped_column(Integer, default=10_000, server_default="10000")
