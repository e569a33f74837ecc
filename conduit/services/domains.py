"""Domains: claims, DNS verification (TXT token + MX), squatting resistance, public domains."""

from __future__ import annotations

import secrets

import dns.asyncresolver
from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id, new_id
from conduit.errors import Conflict, Invalid, NotFound
from conduit.net.dns import DnsLookupError, lookup_mx, lookup_txt
from conduit.net.domain_names import normalize_domain_name
from conduit.services import audit
from conduit.storage.models import Account, Domain

TXT_PREFIX = "_conduit-verify"
MX_PRIORITY = 10


def _name(value: str) -> str:
    try:
        return normalize_domain_name(value)
    except ValueError as exc:
        raise Invalid(str(exc), field="name", code="invalid_domain_name") from None


async def ensure_public(session: AsyncSession, names: tuple[str, ...]) -> None:
    """Make sure every configured public domain has its row (rows give public domains an ID)."""
    if not names:
        return
    existing = set(await session.scalars(select(Domain.name).where(Domain.is_public, Domain.name.in_(names))))
    for name in names:
        if name in existing:
            continue
        try:
            async with session.begin_nested():  # another node may insert it at the same moment
                session.add(Domain(id=new_id("dom"), account_id=None, name=name, verified=True, is_public=True))
        except IntegrityError:
            pass


async def list_for(session: AsyncSession, account: Account, *, public: tuple[str, ...]) -> list[Domain]:
    await ensure_public(session, public)
    rows = await session.scalars(select(Domain).where(or_(Domain.account_id == account.id, _listed_public(public)))
                                 .order_by(Domain.is_public, Domain.name, Domain.id))
    return list(rows)


async def get_visible(session: AsyncSession, account: Account, domain_id: str, *,
                      public: tuple[str, ...]) -> Domain:
    """The account's own claim or a public domain; anything else is 404."""
    await ensure_public(session, public)
    domain = await session.get(Domain, domain_id) if is_id(domain_id, "dom") else None
    if domain is None or not ((domain.is_public and domain.name in public) or domain.account_id == account.id):
        raise NotFound("no domain with this id", code="domain_not_found")
    return domain


def _refuse_public(domain: Domain, action: str) -> None:
    if domain.is_public:
        raise Conflict(f"{domain.name} is a public domain run by the operator; it cannot be {action}",
                       code="public_domain")


async def claim(session: AsyncSession, account: Account, *, name: str, public: tuple[str, ...], ip: str) -> Domain:
    name = _name(name)
    if name in public:
        raise Conflict(f"{name} is a public domain: create webhooks on it without claiming it", code="public_domain")
    holders = list(await session.scalars(select(Domain).where(Domain.name == name)))
    if any(d.verified for d in holders):
        raise Conflict(f"{name} is already verified by an account", code="domain_taken")
    if any(d.account_id == account.id for d in holders):
        raise Conflict(f"you have already claimed {name}", code="domain_already_claimed")
    domain = Domain(id=new_id("dom"), account_id=account.id, name=name,
                    verification_token=f"conduit-verify={secrets.token_urlsafe(24)}")
    session.add(domain)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"you have already claimed {name}", code="domain_already_claimed") from None
    audit.record(session, account.id, "domain.claimed", ip=ip, domain_id=domain.id, name=name)
    return domain


async def verify(session: AsyncSession, account: Account, domain_id: str, *, resolver: dns.asyncresolver.Resolver,
                 mx_host: str, public: tuple[str, ...], ip: str) -> Domain:
    """Check the TXT token and the MX record; the first account to pass owns the name."""
    domain = await get_visible(session, account, domain_id, public=public)
    _refuse_public(domain, "verified")
    if domain.verified:
        return domain
    await _check_txt(resolver, domain)
    await _check_mx(resolver, domain, mx_host)
    name = domain.name  # a failed flush expires the row: domain.name could not be read in the handler
    domain.verified = True
    try:
        await session.flush()
    except IntegrityError:  # another account verified the same name a moment ago
        raise Conflict(f"{name} was verified by another account", code="domain_taken") from None
    # The other accounts' unverified claims on this name are void now.
    await session.execute(delete(Domain).where(Domain.name == domain.name, Domain.id != domain.id,
                                               Domain.verified.is_(False)))
    audit.record(session, account.id, "domain.verified", ip=ip, domain_id=domain.id, name=domain.name)
    return domain


async def _check_txt(resolver: dns.asyncresolver.Resolver, domain: Domain) -> None:
    name = f"{TXT_PREFIX}.{domain.name}"
    try:
        records = await lookup_txt(resolver, name)
    except DnsLookupError as exc:
        raise Invalid(f"TXT check failed: {exc}", code="dns_verification_failed") from None
    if domain.verification_token not in (r.strip() for r in records):
        found = ", ".join(repr(r) for r in records) or "no TXT records"
        raise Invalid(f"TXT check failed: no TXT record at {name} holds the verification token "
                      f"{domain.verification_token!r}; found {found}", code="dns_verification_failed")


async def _check_mx(resolver: dns.asyncresolver.Resolver, domain: Domain, mx_host: str) -> None:
    try:
        records = await lookup_mx(resolver, domain.name)
    except DnsLookupError as exc:
        raise Invalid(f"MX check failed: {exc}", code="dns_verification_failed") from None
    if (MX_PRIORITY, mx_host) not in records:
        found = ", ".join(f"{p} {h}" for p, h in records) or "no MX records"
        raise Invalid(f"MX check failed: {domain.name} needs an MX record '{MX_PRIORITY} {mx_host}'; found {found}",
                      code="dns_verification_failed")


async def delete_domain(session: AsyncSession, account: Account, domain_id: str, *, public: tuple[str, ...],
                        ip: str) -> None:
    """Delete a claim; the webhooks on the domain are deleted with it (foreign key cascade)."""
    domain = await get_visible(session, account, domain_id, public=public)
    _refuse_public(domain, "deleted")
    await session.delete(domain)
    audit.record(session, account.id, "domain.deleted", ip=ip, domain_id=domain.id, name=domain.name)


async def usable_for_address(session: AsyncSession, account: Account, name: str, *,
                             public: tuple[str, ...]) -> Domain | None:
    """The domain a webhook address may use: the account's verified claim, or a public domain."""
    return await session.scalar(select(Domain).where(
        Domain.name == name, Domain.verified, or_(Domain.account_id == account.id, _listed_public(public))))


def _listed_public(public: tuple[str, ...]) -> ColumnElement[bool]:
    """Public rows whose name the operator still lists in CONDUIT_PUBLIC_DOMAINS. A name taken off
    the list stops being offered; webhooks already on it keep receiving mail until deleted."""
    return and_(Domain.is_public, Domain.name.in_(public))
