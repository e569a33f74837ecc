"""Sign-in, the TOTP challenge, refresh-token rotation with reuse detection, sign-out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.crypto import Crypto, hash_token, random_token, verify_password
from conduit.errors import AuthFailed, Invalid, Unauthorized
from conduit.services import access_tokens, accounts, audit, throttle, two_factor
from conduit.storage.models import Account, OneTimeToken, RefreshToken

CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE = "totp_challenge"
BAD_CREDENTIALS = "email or password is wrong"


@dataclass(frozen=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class TotpChallenge:
    totp_token: str
    expires_in: int
    totp_required: bool = True


async def open_session(session: AsyncSession, account: Account, *, settings: Settings, crypto: Crypto,
                       family_id: str | None = None) -> SessionTokens:
    """Issue an access token and a refresh token (a new family unless rotating one)."""
    refresh = random_token("crt_")
    at = now()
    session.add(RefreshToken(id=new_id("rt"), account_id=account.id, family_id=family_id or new_id("fam"),
                             token_hash=hash_token(refresh), created_at=at,
                             expires_at=at + timedelta(seconds=settings.refresh_token_ttl)))
    access = access_tokens.issue(crypto.jwt_key, account_id=account.id, generation=account.token_generation,
                                 ttl=settings.access_token_ttl)
    return SessionTokens(access_token=access, refresh_token=refresh, expires_in=settings.access_token_ttl)


async def sign_in(session: AsyncSession, *, email: str, password: str, ip: str, settings: Settings,
                  crypto: Crypto) -> SessionTokens | TotpChallenge:
    """Same answer and cost for an unknown email and a wrong password: no account enumeration."""
    try:
        email = accounts.normalize_email(email)
    except Invalid:
        email = email.strip().lower()
    keys = [f"signin:email:{email}", f"signin:ip:{ip}"]
    attempt = await throttle.reserve(session, keys, throttle.SIGN_IN, what="failed sign-ins")
    account = await accounts.find_by_email(session, email)
    if len(password) > accounts.PASSWORD_MAX:
        password = ""  # no account has such a password; don't spend Argon2 on megabytes
    if not await verify_password(account.password_hash if account else None, password):
        if account:
            audit.record(session, account.id, "session.sign_in_failed", ip=ip)
        raise AuthFailed(BAD_CREDENTIALS, code="invalid_credentials")
    assert account is not None
    accounts.ensure_enabled(account)
    await throttle.release(session, attempt)
    if account.totp_enabled:
        token = random_token("ctc_")
        session.add(OneTimeToken(id=new_id("ott"), account_id=account.id, purpose=CHALLENGE,
                                 token_hash=hash_token(token), created_at=now(), expires_at=now() + CHALLENGE_TTL))
        audit.record(session, account.id, "session.totp_challenge_issued", ip=ip)
        return TotpChallenge(totp_token=token, expires_in=int(CHALLENGE_TTL.total_seconds()))
    audit.record(session, account.id, "session.sign_in", ip=ip)
    return await open_session(session, account, settings=settings, crypto=crypto)


async def complete_totp(session: AsyncSession, *, totp_token: str, code: str, ip: str, settings: Settings,
                        crypto: Crypto) -> SessionTokens:
    challenge = await session.scalar(select(OneTimeToken).where(
        OneTimeToken.token_hash == hash_token(totp_token), OneTimeToken.purpose == CHALLENGE))
    if challenge is None or challenge.used_at is not None or (challenge.expires_at and challenge.expires_at <= now()):
        raise Unauthorized("the TOTP challenge token is invalid, used or expired", code="invalid_totp_token")
    account = await session.get_one(Account, challenge.account_id)
    await two_factor.verify_code(session, account, code, ip=ip, crypto=crypto)
    accounts.ensure_enabled(account)
    challenge.used_at = now()
    audit.record(session, account.id, "session.sign_in", ip=ip, second_factor=True)
    return await open_session(session, account, settings=settings, crypto=crypto)


async def refresh(session: AsyncSession, *, refresh_token: str, ip: str, settings: Settings,
                  crypto: Crypto) -> SessionTokens:
    """Rotate: the presented token dies and a new one of the same family is issued.

    Presenting a token that was already rotated means someone kept a copy: the whole family
    is revoked, so both the thief and the owner must sign in again.
    """
    row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now():
        raise Unauthorized("refresh token is invalid or expired", code="invalid_refresh_token")
    if row.rotated_at is not None:
        await _revoke_family(session, row.family_id)
        audit.record(session, row.account_id, "session.refresh_token_reuse", ip=ip)
        raise AuthFailed("refresh token was already used; the session has been revoked",
                         code="refresh_token_reused")
    # Conditional update: of two concurrent refreshes with one token, only one rotates it.
    rotated = cast(CursorResult[Any], await session.execute(update(RefreshToken).where(
        RefreshToken.id == row.id, RefreshToken.rotated_at.is_(None)).values(rotated_at=now())))
    if rotated.rowcount != 1:
        raise Unauthorized("refresh token was already used", code="invalid_refresh_token")
    account = await session.get_one(Account, row.account_id)
    return await open_session(session, account, settings=settings, crypto=crypto, family_id=row.family_id)


async def sign_out(session: AsyncSession, account: Account, *, refresh_token: str | None, ip: str) -> None:
    """Revoke the session the refresh token belongs to; without one, sign out everywhere."""
    if refresh_token is None:
        await accounts.revoke_sessions(session, account, api_tokens=False)
        audit.record(session, account.id, "session.sign_out", ip=ip, everywhere=True)
        return
    row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token),
                                                          RefreshToken.account_id == account.id))
    if row is not None:
        await _revoke_family(session, row.family_id)
    audit.record(session, account.id, "session.sign_out", ip=ip, everywhere=False)


async def _revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(update(RefreshToken).where(RefreshToken.family_id == family_id,
                                                     RefreshToken.revoked_at.is_(None)).values(revoked_at=now()))
