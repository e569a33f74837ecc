"""SMTP security policies: validation, storage (SMTP password as Argon2id), CRUD.

The list fields arrive as one string each and are stored normalised ("10.0.0.0/8, 192.0.2.1").
Deleting a policy detaches it from its webhooks (foreign key SET NULL): they then accept mail
without a policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id, new_id
from conduit.crypto import hash_password, verify_password
from conduit.errors import Invalid, NotFound
from conduit.net.addresses import IPNetwork, parse_ip_list
from conduit.services import audit, throttle
from conduit.services.policy_rules import (
    SPAM_ACTIONS,
    PolicyRules,
    parse_domain_list,
    parse_smtp_credentials,
)
from conduit.storage.models import Account, SmtpPolicy

MASK = "********"

# SMTP AUTH guessing: failures are counted in the database, so every SMTP node shares the counts.
# Over a limit, AUTH is answered 454 (try later) without checking the password, even a right one.
SMTP_AUTH_PER_LOGIN = throttle.Limit(10, timedelta(minutes=15))
SMTP_AUTH_PER_IP = throttle.Limit(30, timedelta(minutes=15))
SMTP_AUTH_FAILURES_PER_SESSION = 3  # then the session is closed with 421


@dataclass(frozen=True)
class PolicyView:
    """A policy as the API shows it: the password only right after it was set."""

    policy: SmtpPolicy
    revealed_password: str | None = None

    @property
    def smtp_credentials(self) -> str:
        if not self.policy.smtp_username:
            return ""
        return f"{self.policy.smtp_username}:{self.revealed_password or MASK}"


def _invalid(field: str, exc: ValueError) -> Invalid:
    return Invalid(f"{field}: {exc}" if not str(exc).startswith(field) else str(exc), field=field)


def _network_text(network: IPNetwork) -> str:
    """A single host as its address ("192.0.2.1"), as the user wrote it; a network in CIDR form."""
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def _name(value: Any) -> str:
    name = (value or "").strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= 100:
        raise Invalid("name is required (1 to 100 characters)", field="name")
    return name


async def _apply(policy: SmtpPolicy, changes: dict[str, Any]) -> str | None:
    """Validate and set the given fields; returns the new SMTP password if one was set."""
    revealed = None
    if "name" in changes:
        policy.name = _name(changes["name"])
    if "allowed_source_ips" in changes:
        try:
            networks = parse_ip_list(changes["allowed_source_ips"] or "")
        except ValueError as exc:
            raise _invalid("allowed_source_ips", exc) from None
        policy.allowed_source_ips = ", ".join(_network_text(n) for n in networks)
    for field in ("allowed_spf_domains", "allowed_dkim_domains"):
        if field in changes:
            try:
                setattr(policy, field, ", ".join(parse_domain_list(changes[field] or "")))
            except ValueError as exc:
                raise _invalid(field, exc) from None
    for flag in ("require_smtp_auth", "require_spf", "require_dkim"):
        if flag in changes and changes[flag] is not None:
            setattr(policy, flag, bool(changes[flag]))
    if "spam_action" in changes and changes["spam_action"] is not None:
        if changes["spam_action"] not in SPAM_ACTIONS:
            raise Invalid("spam_action must be 'deliver' or 'reject'", field="spam_action")
        policy.spam_action = changes["spam_action"]
    if changes.get("clear_spam_threshold"):
        policy.spam_threshold = None
    elif changes.get("spam_threshold") is not None:
        policy.spam_threshold = _spam_threshold(changes["spam_threshold"])
    if "smtp_credentials" in changes:
        value = changes["smtp_credentials"] or ""
        if value:
            try:
                username, password = parse_smtp_credentials(value)
            except ValueError as exc:
                raise _invalid("smtp_credentials", exc) from None
            policy.smtp_username = username
            policy.smtp_password_hash = await hash_password(password)
            revealed = password
        else:
            policy.smtp_username, policy.smtp_password_hash = "", ""
    if policy.require_smtp_auth and not policy.smtp_username:
        raise Invalid("require_smtp_auth needs smtp_credentials ('username:password')", field="smtp_credentials")
    return revealed


def _spam_threshold(value: Any) -> float:
    """An rspamd score: a finite number (rspamd's scores are small; its default reject is 15)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not -1000 <= value <= 1000:
        raise Invalid("spam_threshold must be a score between -1000 and 1000", field="spam_threshold")
    return float(value)


async def create(session: AsyncSession, account: Account, *, fields: dict[str, Any], ip: str) -> PolicyView:
    policy = SmtpPolicy(id=new_id("pol"), account_id=account.id, name=_name(fields.get("name")),
                        allowed_source_ips="", allowed_spf_domains="", allowed_dkim_domains="",
                        require_smtp_auth=False, require_spf=False, require_dkim=False,
                        smtp_username="", smtp_password_hash="", spam_action="deliver", spam_threshold=None)
    revealed = await _apply(policy, fields)
    await _save(session, policy)
    audit.record(session, account.id, "smtp_policy.created", ip=ip, policy_id=policy.id, name=policy.name)
    return PolicyView(policy, revealed)


async def update(session: AsyncSession, account: Account, policy_id: str, *, changes: dict[str, Any],
                 ip: str) -> PolicyView:
    """Partial update: only the fields present in ``changes`` change."""
    policy = await get(session, account, policy_id)
    revealed = await _apply(policy, changes)
    await _save(session, policy)
    audit.record(session, account.id, "smtp_policy.updated", ip=ip, policy_id=policy.id,
                 fields=sorted(changes))
    return PolicyView(policy, revealed)


async def _save(session: AsyncSession, policy: SmtpPolicy) -> None:
    # Checked by query first: a failed flush expires the policy (reading policy.name would raise) and,
    # on PostgreSQL, aborts the transaction; begin_nested() would not help, it flushes before its savepoint.
    name = policy.name
    taken = _name_taken(name)
    with session.no_autoflush:
        clash = await session.scalar(select(SmtpPolicy.id).where(SmtpPolicy.account_id == policy.account_id,
                                                                 SmtpPolicy.name == name, SmtpPolicy.id != policy.id))
    if clash:
        raise taken
    session.add(policy)
    try:
        await session.flush()
    except IntegrityError:  # created by a concurrent request since the check above
        raise taken from None


def _name_taken(name: str) -> Invalid:
    return Invalid(f"name: a policy named {name!r} already exists", field="name", code="policy_name_taken")


async def get(session: AsyncSession, account: Account, policy_id: str) -> SmtpPolicy:
    policy = await session.get(SmtpPolicy, policy_id) if is_id(policy_id, "pol") else None
    if policy is None or policy.account_id != account.id:
        raise NotFound("no SMTP security policy with this id", code="policy_not_found")
    return policy


async def list_for(session: AsyncSession, account: Account) -> list[SmtpPolicy]:
    rows = await session.scalars(select(SmtpPolicy).where(SmtpPolicy.account_id == account.id)
                                 .order_by(SmtpPolicy.created_at, SmtpPolicy.id))
    return list(rows)


async def delete_policy(session: AsyncSession, account: Account, policy_id: str, *, ip: str) -> None:
    policy = await get(session, account, policy_id)
    await session.delete(policy)
    audit.record(session, account.id, "smtp_policy.deleted", ip=ip, policy_id=policy.id, name=policy.name)


def rules_of(policy: SmtpPolicy) -> PolicyRules:
    """The decision-function form of a stored policy (used by the SMTP server)."""
    return PolicyRules.from_stored(
        require_smtp_auth=policy.require_smtp_auth, smtp_username=policy.smtp_username or None,
        allowed_source_ips=policy.allowed_source_ips, require_spf=policy.require_spf,
        allowed_spf_domains=policy.allowed_spf_domains, require_dkim=policy.require_dkim,
        allowed_dkim_domains=policy.allowed_dkim_domains, spam_action=policy.spam_action or "deliver",
        spam_threshold=policy.spam_threshold)


@dataclass(frozen=True)
class SmtpAuthOutcome:
    """What SMTP AUTH credentials opened: the IDs of the policies whose credentials they are
    (none: refused), or nothing because the client or the login is throttled."""

    policies: frozenset[str]
    throttled: bool = False


async def authenticate_smtp(session: AsyncSession, login: str, password: str, *, ip: str) -> SmtpAuthOutcome:
    """SMTP AUTH: throttled per client IP and per login (a failure counts for both), else the
    policies these credentials open. An unknown login costs the same Argon2 verification as a
    known one, so the answer's timing does not tell them apart."""
    ip_key, login_key = f"smtp-auth:ip:{ip}", f"smtp-auth:login:{login}"
    by_ip = await throttle.try_reserve(session, [ip_key], SMTP_AUTH_PER_IP)
    if isinstance(by_ip, int):
        return SmtpAuthOutcome(policies=frozenset(), throttled=True)
    by_login = await throttle.try_reserve(session, [login_key], SMTP_AUTH_PER_LOGIN)
    if isinstance(by_login, int):
        await throttle.release(session, by_ip)
        return SmtpAuthOutcome(policies=frozenset(), throttled=True)
    opened = await opened_by_credentials(session, login, password)
    if opened:  # only failures count
        await throttle.release(session, by_ip)
        await throttle.release(session, by_login)
    return SmtpAuthOutcome(policies=frozenset(opened))


async def opened_by_credentials(session: AsyncSession, login: str, password: str) -> list[str]:
    """IDs of the policies whose SMTP credentials are login:password. At least one Argon2
    verification whatever the login: against a dummy hash when no policy has it."""
    candidates = (await session.execute(select(SmtpPolicy.id, SmtpPolicy.smtp_password_hash)
                                        .where(SmtpPolicy.smtp_username == login, SmtpPolicy.smtp_username != "",
                                               SmtpPolicy.smtp_password_hash != ""))).all()
    if not candidates:
        await verify_password(None, password)
        return []
    return [policy_id for policy_id, password_hash in candidates if await verify_password(password_hash, password)]
