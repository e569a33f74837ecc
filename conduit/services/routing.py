"""Which webhook receives mail for a recipient address: exact, then plus-base, then catch-all."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.db.models import SmtpPolicy, Webhook
from conduit.services.webhook_rules import CATCH_ALL, split_plus


@dataclass(frozen=True)
class Route:
    webhook: Webhook
    policy: SmtpPolicy | None
    mailbox_hash: str | None


def candidates(address: str) -> list[str]:
    """Addresses to try, in order, for a recipient (already lower-case)."""
    local, _, domain = address.rpartition("@")
    base, tag = split_plus(local)
    tried = [address]
    if tag is not None:
        tried.append(f"{base}@{domain}")
    tried.append(f"{CATCH_ALL}@{domain}")
    return tried


async def route(session: AsyncSession, address: str) -> Route | None:
    address = address.strip().lower()
    if "@" not in address:
        return None
    order = candidates(address)
    rows = (await session.execute(
        select(Webhook, SmtpPolicy).outerjoin(SmtpPolicy, SmtpPolicy.id == Webhook.smtp_security_policy_id)
        .where(Webhook.address.in_(order)))).all()
    if not rows:
        return None
    webhook, policy = min(rows, key=lambda row: order.index(row[0].address))
    _, tag = split_plus(address.rpartition("@")[0])
    return Route(webhook=webhook, policy=policy, mailbox_hash=tag)
