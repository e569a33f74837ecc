"""TOTP two-factor authentication (pyotp, 30-second steps, one step of drift) and backup codes."""

from __future__ import annotations

import base64
import hmac
import io
import secrets
from typing import Any, cast

import pyotp
import segno
from sqlalchemy import CursorResult, delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.crypto import Crypto, hash_token
from conduit.errors import AuthFailed, Conflict, Invalid
from conduit.services import audit, throttle
from conduit.storage.models import Account, OneTimeToken

ISSUER = "Conduit"
BACKUP = "backup_code"
BACKUP_CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


def _new_backup_code() -> str:
    """16 characters from a 31-letter alphabet: 79 bits, enough for a plain hash at rest."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def _normalize_backup_code(code: str) -> str:
    raw = code.strip().lower().replace("-", "").replace(" ", "")
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


async def setup(session: AsyncSession, account: Account, *, crypto: Crypto, ip: str) -> tuple[str, str, str]:
    """A new secret (not active until enabled): secret, otpauth URL, base64 PNG QR code."""
    if account.totp_enabled:
        raise Conflict("two-factor authentication is already enabled; disable it first", code="totp_enabled")
    secret = pyotp.random_base32()
    account.totp_secret = crypto.encrypt(secret)
    account.totp_last_step = 0
    url = pyotp.TOTP(secret).provisioning_uri(name=account.email, issuer_name=ISSUER)
    png = io.BytesIO()
    segno.make(url, error="m").save(png, kind="png", scale=5)
    audit.record(session, account.id, "2fa.setup", ip=ip)
    return secret, url, base64.b64encode(png.getvalue()).decode()


async def enable(session: AsyncSession, account: Account, *, code: str, crypto: Crypto, ip: str) -> list[str]:
    if account.totp_enabled:
        raise Conflict("two-factor authentication is already enabled", code="totp_enabled")
    if not account.totp_secret:
        raise Invalid("two-factor authentication is not set up yet; call setup first", code="totp_not_set_up")
    await verify_code(session, account, code, ip=ip, crypto=crypto, allow_backup=False)
    account.totp_enabled = True
    codes = await _replace_backup_codes(session, account)
    audit.record(session, account.id, "2fa.enabled", ip=ip)
    return codes


async def disable(session: AsyncSession, account: Account, *, code: str, crypto: Crypto, ip: str) -> None:
    _require_enabled(account)
    await verify_code(session, account, code, ip=ip, crypto=crypto)
    account.totp_enabled = False
    account.totp_secret = None
    account.totp_last_step = 0
    await session.execute(delete(OneTimeToken).where(OneTimeToken.account_id == account.id,
                                                     OneTimeToken.purpose == BACKUP))
    audit.record(session, account.id, "2fa.disabled", ip=ip)


async def regenerate_backup_codes(session: AsyncSession, account: Account, *, code: str, crypto: Crypto,
                                  ip: str) -> list[str]:
    _require_enabled(account)
    await verify_code(session, account, code, ip=ip, crypto=crypto)
    codes = await _replace_backup_codes(session, account)
    audit.record(session, account.id, "2fa.backup_codes_regenerated", ip=ip)
    return codes


def _require_enabled(account: Account) -> None:
    if not account.totp_enabled:
        raise Invalid("two-factor authentication is not enabled", code="totp_not_enabled")


async def _replace_backup_codes(session: AsyncSession, account: Account) -> list[str]:
    await session.execute(delete(OneTimeToken).where(OneTimeToken.account_id == account.id,
                                                     OneTimeToken.purpose == BACKUP))
    codes = [_new_backup_code() for _ in range(BACKUP_CODE_COUNT)]
    session.add_all(OneTimeToken(id=new_id("ott"), account_id=account.id, purpose=BACKUP,
                                 token_hash=hash_token(c), created_at=now()) for c in codes)
    return codes


async def verify_code(session: AsyncSession, account: Account, code: str, *, ip: str, crypto: Crypto,
                      allow_backup: bool = True) -> None:
    """Accept a fresh TOTP code (each 30-second step once only) or an unused backup code.

    Wrong codes are counted per account and per IP; past the limit, Throttled.
    """
    keys = [f"totp:account:{account.id}", f"totp:ip:{ip}"]
    attempt = await throttle.reserve(session, keys, throttle.TOTP, what="wrong two-factor codes")
    code = code.strip()
    if _looks_like_totp(code):
        ok = await _accept_totp(session, account, code, crypto)
    else:
        ok = allow_backup and await _consume_backup_code(session, account, code)
    if not ok:
        audit.record(session, account.id, "2fa.code_rejected", ip=ip)
        raise AuthFailed("the two-factor code is wrong or was already used", code="invalid_totp_code")
    await throttle.release(session, attempt)


def _looks_like_totp(code: str) -> bool:
    """Six ASCII digits. str.isdigit() alone also takes other scripts' digits ("١٢٣٤٥٦",
    full-width, superscripts), which no authenticator sends and hmac.compare_digest refuses to
    compare (non-ASCII str): such a code is simply a wrong one."""
    return len(code) == 6 and code.isascii() and code.isdigit()


async def _accept_totp(session: AsyncSession, account: Account, code: str, crypto: Crypto) -> bool:
    if not account.totp_secret:
        return False
    totp = pyotp.TOTP(crypto.decrypt(account.totp_secret))
    current = totp.timecode(now())
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if step <= account.totp_last_step:
                return False  # replay of a code already used
            # Conditional update so two concurrent requests cannot both use the step.
            result = cast(CursorResult[Any], await session.execute(update(Account).where(
                Account.id == account.id, Account.totp_last_step < step).values(totp_last_step=step)
                .execution_options(synchronize_session=False)))
            if result.rowcount != 1:
                return False
            account.totp_last_step = step
            return True
    return False


async def _consume_backup_code(session: AsyncSession, account: Account, code: str) -> bool:
    result = cast(CursorResult[Any], await session.execute(update(OneTimeToken).where(
        OneTimeToken.account_id == account.id, OneTimeToken.purpose == BACKUP,
        OneTimeToken.token_hash == hash_token(_normalize_backup_code(code)),
        OneTimeToken.used_at.is_(None)).values(used_at=now())))
    return result.rowcount == 1
