"""Who is calling: a bearer access token (JWT) or an API token (``cdt_``) becomes an Account."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.db.models import Account
from conduit.errors import Unauthorized
from conduit.services import access_tokens, api_tokens
from conduit.services.crypto import Crypto


async def authenticate(session: AsyncSession, bearer: str | None, *, ip: str, crypto: Crypto) -> Account:
    if not bearer:
        raise Unauthorized("missing bearer token", code="unauthorized")
    if bearer.startswith(api_tokens.PREFIX):
        row = await api_tokens.find_usable(session, bearer, ip=ip)
        account = await session.get(Account, row.account_id) if row else None
    else:
        claims = access_tokens.verify(crypto.jwt_key, bearer)
        account = await session.get(Account, claims.account_id) if claims else None
        if account is not None and claims is not None and account.token_generation != claims.generation:
            account = None  # issued before a password change or sign-out everywhere
    if account is None:
        raise Unauthorized("invalid, expired or revoked token", code="unauthorized")
    return account
