"""Long-lived API tokens: ``cdt_`` + 256 random bits, stored as SHA-256, optional IP allow-list."""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id, new_id, now
from conduit.crypto import hash_token, random_token
from conduit.errors import Invalid, NotFound
from conduit.services import audit
from conduit.storage.models import Account, ApiToken

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


def check_within(networks: list[str], scope: list[str]) -> None:
    """A token created by an IP-restricted API token may be used from nowhere its creator may
    not: every network of ``networks`` lies inside one of ``scope`` (both normalised), and an
    empty list (anywhere) is refused. An empty ``scope`` allows anything."""
    if not scope:
        return
    limits = [ipaddress.ip_network(n) for n in scope]
    shown = ", ".join(scope)
    if not networks:
        raise Invalid(f"allowed_ips must not be empty: the API token making this request may be used only from "
                      f"{shown}, and a token it creates may not reach further", field="allowed_ips",
                      code="token_scope_exceeded")
    for entry in networks:
        network = ipaddress.ip_network(entry)
        if not any(_inside(network, limit) for limit in limits):
            raise Invalid(f"allowed_ips entry {entry} is outside the networks the API token making this request "
                          f"may be used from ({shown})", field="allowed_ips", code="token_scope_exceeded")


def _inside(network: IPv4Network | IPv6Network, limit: IPv4Network | IPv6Network) -> bool:
    if isinstance(network, IPv4Network) and isinstance(limit, IPv4Network):
        return network.subnet_of(limit)
    if isinstance(network, IPv6Network) and isinstance(limit, IPv6Network):
        return network.subnet_of(limit)
    return False  # another family: as for a token's use (an IPv4-mapped address is not the IPv4 one)


def ip_allowed(token: ApiToken, ip: str) -> bool:
    if not token.allowed_ips:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in token.allowed_ips)


async def create(session: AsyncSession, account: Account, *, name: str, allowed_ips: list[str] | None,
                 expires_in: int | None, ip: str, created_by: ApiToken | None = None) -> tuple[ApiToken, str]:
    """A new token; ``created_by`` is the API token the request authenticated with, if any: the
    new token's ``allowed_ips`` must then stay within its own."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name must be 1 to 100 characters", field="name")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise Invalid("name must not contain control characters", field="name")
    if expires_in is not None and not 0 <= expires_in <= MAX_EXPIRES_IN:
        raise Invalid(f"expires_in must be between 0 (never) and {MAX_EXPIRES_IN} seconds", field="expires_in")
    networks = check_allowed_ips(allowed_ips or [])
    if created_by is not None:
        check_within(networks, created_by.allowed_ips)
    token = random_token(PREFIX)
    at = now()
    row = ApiToken(id=new_id("tok"), account_id=account.id, name=name, token_hash=hash_token(token),
                   allowed_ips=networks, created_at=at,
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
    result = cast(CursorResult[Any], await session.execute(
        delete(ApiToken).where(ApiToken.id == token_id, ApiToken.account_id == account.id)))
    if result.rowcount != 1:
        raise NotFound("no API token with this id", code="api_token_not_found")
    audit.record(session, account.id, "api_token.revoked", ip=ip, token_id=token_id)


async def find_valid(session: AsyncSession, token: str) -> ApiToken | None:
    """The token's row if it exists and has not expired, wherever it is used from."""
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or (row.expires_at and row.expires_at <= now()):
        return None
    return row


async def find_usable(session: AsyncSession, token: str, *, ip: str) -> ApiToken | None:
    """The token's row if it exists, has not expired and may be used from ``ip``; records the use."""
    row = await find_valid(session, token)
    if row is None or not ip_allowed(row, ip):
        return None
    row.last_used_at = now()
    return row
