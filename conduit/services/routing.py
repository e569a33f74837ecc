"""Which webhook receives mail for a recipient address: the address without its plus tag, then the
domain's catch-all. A webhook's address never has a plus (conduit/services/webhook_rules.py), so
``box+tag@`` is never looked up as it is."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.mail.addresses import CATCH_ALL, split_plus
from conduit.services import policies
from conduit.services.policy_rules import PolicyRules
from conduit.storage.models import Account, SmtpPolicy, Webhook


@dataclass(frozen=True)
class Route:
    """What the SMTP server needs of a recipient's webhook and policy: plain values, no ORM
    object, so that one Route can be cached and shared by sessions (conduit/services/route_cache.py)."""

    webhook_id: str
    account_id: str
    active: bool
    policy_id: str | None
    rules: PolicyRules  # the policy's, or the default that accepts everything
    synchronous: bool = False  # delivery_mode "synchronous": the receiver's answer is the DATA reply


def normalized(address: str) -> str:
    return address.strip().lower()


def candidates(address: str) -> list[str]:
    """Addresses to try, in order, for a recipient (already lower-case)."""
    local, _, domain = address.rpartition("@")
    base, _ = split_plus(local)
    return [f"{base}@{domain}", f"{CATCH_ALL}@{domain}"]


async def route(session: AsyncSession, address: str) -> Route | None:
    address = normalized(address)
    if "@" not in address:
        return None
    order = candidates(address)
    rows = (await session.execute(
        select(Webhook.address, Webhook.id, Webhook.account_id, Webhook.active, SmtpPolicy, Account.disabled_at,
               Webhook.delivery_mode)
        .join(Account, Account.id == Webhook.account_id)
        .outerjoin(SmtpPolicy, SmtpPolicy.id == Webhook.smtp_security_policy_id)
        .where(Webhook.address.in_(order)))).all()
    if not rows:
        return None
    _, webhook_id, account_id, active, policy, disabled_at, mode = min(rows, key=lambda row: order.index(row[0]))
    # A disabled account's webhooks take no mail: RCPT answers them as inactive (550 5.2.1).
    return Route(webhook_id=webhook_id, account_id=account_id, active=active and disabled_at is None,
                 policy_id=policy.id if policy else None, rules=policies.rules_of(policy) if policy else PolicyRules(),
                 synchronous=mode == "synchronous")
