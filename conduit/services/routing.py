"""Which webhook receives mail for a recipient address: exact, then plus-base, then catch-all."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.db.models import SmtpPolicy, Webhook
from conduit.services import policies
from conduit.services.policy_rules import PolicyRules
from conduit.services.webhook_rules import CATCH_ALL, split_plus


@dataclass(frozen=True)
class Route:
    """What the SMTP server needs of a recipient's webhook and policy: plain values, no ORM
    object, so that one Route can be cached and shared by sessions (conduit/services/route_cache.py)."""

    webhook_id: str
    active: bool
    policy_id: str | None
    rules: PolicyRules  # the policy's, or the default that accepts everything


def normalized(address: str) -> str:
    return address.strip().lower()


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
    address = normalized(address)
    if "@" not in address:
        return None
    order = candidates(address)
    rows = (await session.execute(
        select(Webhook.address, Webhook.id, Webhook.active, SmtpPolicy)
        .outerjoin(SmtpPolicy, SmtpPolicy.id == Webhook.smtp_security_policy_id)
        .where(Webhook.address.in_(order)))).all()
    if not rows:
        return None
    _, webhook_id, active, policy = min(rows, key=lambda row: order.index(row[0]))
    return Route(webhook_id=webhook_id, active=active, policy_id=policy.id if policy else None,
                 rules=policies.rules_of(policy) if policy else PolicyRules())
