"""Who is calling: a bearer access token (JWT) or an API token (``cdt_``) becomes a Caller."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import now
from conduit.crypto import Crypto
from conduit.errors import Unauthorized
from conduit.services import access_tokens, api_tokens
from conduit.storage.models import Account, ApiToken


class TokenRefused(Unauthorized):
    """The bearer token is missing or opens nothing. ``token_given`` tells the API whether to
    answer ``WWW-Authenticate: Bearer error="invalid_token"`` or plain ``Bearer`` (RFC 6750 3.1:
    a request without a token gets no error code)."""

    def __init__(self, message: str, *, code: str, token_given: bool = True) -> None:
        super().__init__(message, code=code)
        self.token_given = token_given


@dataclass(frozen=True)
class Caller:
    """The account, and the API token the request authenticated with (None for an access token):
    what a token may do can depend on its own limits (see api_tokens.create)."""

    account: Account
    api_token: ApiToken | None = None


async def authenticate(session: AsyncSession, bearer: str | None, *, ip: str, crypto: Crypto) -> Caller:
    if not bearer:
        raise TokenRefused("missing bearer token", code="unauthorized", token_given=False)
    token: ApiToken | None = None
    if bearer.startswith(api_tokens.PREFIX):
        token = row = await api_tokens.find_valid(session, bearer)
        if row is not None and not api_tokens.ip_allowed(row, ip):
            # Said only to whoever holds a valid token: without it the answer is the generic one.
            raise TokenRefused(f"this API token may not be used from {ip}: the address is not in its allowed_ips",
                               code="token_ip_not_allowed")
        account = await session.get(Account, row.account_id) if row else None
        if row is not None and account is not None and account.disabled_at is None:
            row.last_used_at = now()
    else:
        claims = access_tokens.verify(crypto.jwt_key, bearer)
        account = await session.get(Account, claims.account_id) if claims else None
        if (account is not None and claims is not None and account.disabled_at is None
                and account.token_generation != claims.generation):
            account = None  # issued before a password change or sign-out everywhere
    if account is None:
        raise TokenRefused("invalid, expired or revoked token", code="unauthorized")
    if account.disabled_at is not None:
        raise TokenRefused("this account is disabled; ask the operator of this Conduit", code="account_disabled")
    return Caller(account=account, api_token=token)
