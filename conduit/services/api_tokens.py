"""Long-lived API tokens: ``cdt_`` + 256 random bits, stored as SHA-256, optional IP allow-list."""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id, new_id, now
from conduit.db.models import Account, ApiToken
from conduit.errors import Invalid, NotFound
from conduit.services import audit
from conduit.services.crypto import hash_token, random_token

PREFIX = "cdt_"
MAX_ALLOWED_IPS = 100
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600


def check_allowed_ips(entries: list[str]) -> list[str]:
    """Normalise IPs and CIDRs ("10.0.0.0/8", "2001:db8::1"); a malformed entry is named in the 422."""
    if len(entries) > MAX_ALLOWED_IPS:
        raise Invalid(f"allowed_ips may hold at most {MAX_ALLOWED_IPS} entries", field="allowed_ips")
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise Invalid(f"allowed_ips entry {entry!r} is not an IP address or CIDR", field="allowed_ips") from None
    return networks


def ip_allowed(token: ApiToken, ip: str) -> bool:
    if not token.allowed_ips:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in token.allowed_ips)


async def create(session: AsyncSession, account: Account, *, name: str, allowed_ips: list[str] | None,
                 expires_in: int | None, ip: str) -> tuple[ApiToken, str]:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name must be 1 to 100 characters", field="name")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise Invalid("name must not contain control characters", field="name")
    if expires_in is not None and not 0 <= expires_in <= MAX_EXPIRES_IN:
        raise Invalid(f"expires_in must be between 0 (never) and {MAX_EXPIRES_IN} seconds", field="expires_in")
    token = random_token(PREFIX)
    at = now()
    row = ApiToken(id=new_id("tok"), account_id=account.id, name=name, token_hash=hash_token(token),
                   allowed_ips=check_allowed_ips(allowed_ips or []), created_at=at,
                   expires_at=at + timedelta(seconds=expires_in) if expires_in else None)
    session.add(row)
    audit.record(session, account.id, "api_token.created", ip=ip, token_id=row.id, name=name)
    return row, token


async def list_for(session: AsyncSession, account: Account) -> list[ApiToken]:
    rows = await session.scalars(select(ApiToken).where(ApiToken.account_id == account.id)
                                 .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))
    return list(rows)


async def revoke(session: AsyncSession, account: Account, token_id: str, *, ip: str) -> None:
    if not is_id(token_id, "tok"):
        raise NotFound("no API token with this id", code="api_token_not_found")
    result = await session.execute(delete(ApiToken).where(ApiToken.id == token_id, ApiToken.account_id == account.id))
    if result.rowcount != 1:
        raise NotFound("no API token with this id", code="api_token_not_found")
    audit.record(session, account.id, "api_token.revoked", ip=ip, token_id=token_id)


async def find_usable(session: AsyncSession, token: str, *, ip: str) -> ApiToken | None:
    """The token's row if it exists, has not expired and may be used from ``ip``; records the use."""
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or (row.expires_at and row.expires_at <= now()) or not ip_allowed(row, ip):
        return None
    row.last_used_at = now()
    return row
