"""Accounts: sign up, password rules, time zone, password change and reset, deletion, and the
operator's actions (create, disable, enable, delete) of `conduit accounts`."""

from __future__ import annotations

import functools
from datetime import timedelta
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.crypto import hash_password, hash_token, random_token, verify_password
from conduit.errors import AuthFailed, ConduitError, Conflict, Invalid, NotFound, Unauthorized
from conduit.services import audit, throttle
from conduit.storage.models import Account, ApiToken, OneTimeToken, RefreshToken

PASSWORD_MIN, PASSWORD_MAX = 8, 256
RESET_TOKEN_TTL = timedelta(hours=1)
RESET = "password_reset"
OPERATOR = "cli"  # the actor of the operator's actions in the audit log


class SignupClosed(ConduitError):
    """CONDUIT_SIGNUP=closed: only the operator creates accounts."""

    status = 403
    code = "signup_closed"


def normalize_email(email: str) -> str:
    """Syntax-checked, lower-cased address (no DNS lookup: sign-up must not depend on DNS)."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(f"email is not a valid address: {exc}", field="email") from None
    return result.normalized.lower()


def check_password(password: str, *, field: str = "password") -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long", field=field)
    return password


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> str:
    if name not in _zone_names():
        raise Invalid(f"timezone {name!r} is not an IANA time zone name", field="timezone")
    return name


async def find_by_email(session: AsyncSession, email: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.email == email))


async def create(session: AsyncSession, *, email: str, password: str, ip: str, signup_open: bool = True) -> Account:
    """Sign up. With sign-up closed nothing is looked at first, so the answer says nothing of
    which addresses have accounts."""
    if not signup_open:
        raise SignupClosed("sign-up is closed on this Conduit; ask its operator for an account")
    account = await _insert(session, email=email, password=password)
    audit.record(session, account.id, "account.sign_up", ip=ip)
    return account


async def _insert(session: AsyncSession, *, email: str, password: str) -> Account:
    email = normalize_email(email)
    check_password(password)
    if await find_by_email(session, email):
        raise Conflict("an account with this email is already registered", code="email_taken")
    account = Account(id=new_id("acc"), email=email, password_hash=await hash_password(password))
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise Conflict("an account with this email is already registered", code="email_taken") from None
    return account


def ensure_enabled(account: Account) -> None:
    """Raise unless the account may sign in; called once the password (or code) proved the caller."""
    if account.disabled_at is not None:
        raise Unauthorized("this account is disabled; ask the operator of this Conduit", code="account_disabled")


# The operator's actions (`conduit accounts`): no API, no IP; the audit log names the actor.

async def list_all(session: AsyncSession) -> list[Account]:
    return list(await session.scalars(select(Account).order_by(Account.created_at, Account.id)))


async def find_for_operator(session: AsyncSession, reference: str) -> Account:
    """The account with this id (``acc_…``) or email address."""
    reference = reference.strip()
    account = await session.get(Account, reference)
    if account is None:
        account = await find_by_email(session, reference.lower())
    if account is None:
        raise NotFound(f"no account has the id or email {reference!r}", code="account_not_found")
    return account


async def create_by_operator(session: AsyncSession, *, email: str, password: str) -> Account:
    """Create an account whatever CONDUIT_SIGNUP says."""
    account = await _insert(session, email=email, password=password)
    audit.record(session, account.id, "account.created", actor=OPERATOR)
    return account


async def set_disabled(session: AsyncSession, account: Account, *, disabled: bool) -> bool:
    """Disable or enable; False when the account already was so. Disabling ends every session at
    once (refresh tokens revoked, access tokens dead); API tokens are refused while it lasts."""
    if (account.disabled_at is not None) == disabled:
        return False
    account.disabled_at = now() if disabled else None
    if disabled:
        await revoke_sessions(session, account, api_tokens=False)
    audit.record(session, account.id, "account.disabled" if disabled else "account.enabled", actor=OPERATOR)
    return True


async def delete_by_operator(session: AsyncSession, account: Account) -> None:
    """Delete the account and everything it owns, its audit log included (as the API's delete)."""
    await session.delete(account)


async def set_timezone(session: AsyncSession, account: Account, *, timezone: str, ip: str) -> None:
    previous = account.timezone
    account.timezone = check_timezone(timezone)
    audit.record(session, account.id, "account.timezone_changed", ip=ip, old=previous, new=timezone)


async def revoke_sessions(session: AsyncSession, account: Account, *, api_tokens: bool) -> None:
    """End every session: refresh tokens revoked, access tokens dead via the generation bump."""
    await session.execute(update(RefreshToken).where(RefreshToken.account_id == account.id,
                                                     RefreshToken.revoked_at.is_(None)).values(revoked_at=now()))
    account.token_generation += 1
    if api_tokens:
        await session.execute(delete(ApiToken).where(ApiToken.account_id == account.id))


async def change_password(session: AsyncSession, account: Account, *, current_password: str,
                          new_password: str, revoke_api_tokens: bool, ip: str) -> None:
    check_password(new_password, field="new_password")
    await _reauthenticate(session, account, current_password, ip=ip, field="current password")
    account.password_hash = await hash_password(new_password)
    account.password_changed_at = now()
    await revoke_sessions(session, account, api_tokens=revoke_api_tokens)
    audit.record(session, account.id, "account.password_changed", ip=ip, api_tokens_revoked=revoke_api_tokens)


async def request_password_reset(session: AsyncSession, *, email: str, ip: str) -> tuple[Account, str] | None:
    """A reset token for the account, or None (unknown email, or too many requests for it).

    The caller answers 202 either way; only the per-IP limit is visible (429), and it says
    nothing about the address.
    """
    await throttle.reserve(session, [f"reset:ip:{ip}"], throttle.RESET_PER_IP, what="password reset requests")
    try:
        email = normalize_email(email)
    except Invalid:
        return None
    if isinstance(await throttle.try_reserve(session, [f"reset:email:{email}"], throttle.RESET_PER_EMAIL), int):
        return None
    account = await find_by_email(session, email)
    if account is None:
        return None
    token = random_token("prt_")
    session.add(OneTimeToken(id=new_id("ott"), account_id=account.id, purpose=RESET, token_hash=hash_token(token),
                             created_at=now(), expires_at=now() + RESET_TOKEN_TTL))
    audit.record(session, account.id, "account.password_reset_requested", ip=ip)
    return account, token


async def confirm_password_reset(session: AsyncSession, *, token: str, new_password: str, ip: str) -> None:
    check_password(new_password, field="new_password")
    row = await session.scalar(select(OneTimeToken).where(
        OneTimeToken.token_hash == hash_token(token), OneTimeToken.purpose == RESET))
    if row is None or row.used_at is not None or (row.expires_at and row.expires_at <= now()):
        raise Unauthorized("reset token is invalid, used or expired", code="invalid_token")
    account = await session.get_one(Account, row.account_id)
    row.used_at = now()
    account.password_hash = await hash_password(new_password)
    account.password_changed_at = now()
    await revoke_sessions(session, account, api_tokens=True)
    # Any other outstanding reset link for this account dies with this one.
    await session.execute(update(OneTimeToken).where(
        OneTimeToken.account_id == account.id, OneTimeToken.purpose == RESET,
        OneTimeToken.used_at.is_(None)).values(used_at=now()))
    audit.record(session, account.id, "account.password_reset", ip=ip)


async def delete_account(session: AsyncSession, account: Account, *, password: str, confirm: bool, ip: str) -> None:
    """Delete the account and, by the foreign keys' cascade, everything it owns."""
    if confirm is not True:
        raise Invalid("confirm must be true to delete the account", field="confirm")
    await _reauthenticate(session, account, password, ip=ip, field="password")
    await session.delete(account)


async def _reauthenticate(session: AsyncSession, account: Account, password: str, *, ip: str, field: str) -> None:
    """Check the password of a signed-in account, throttled so a stolen token cannot guess it."""
    keys = [f"password:account:{account.id}"]
    attempt = await throttle.reserve(session, keys, throttle.SIGN_IN, what="wrong passwords")
    if not await verify_password(account.password_hash, password):
        audit.record(session, account.id, "account.reauthentication_failed", ip=ip)
        raise AuthFailed(f"{field} is wrong", code="invalid_credentials")
    await throttle.release(session, attempt)
