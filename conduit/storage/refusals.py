"""Refusals: mail refused at SMTP time for an account's addresses, stored without the body.

Recording is bounded per account: each hour (``RefusalWindow``) keeps at most ``cap`` rows and
counts the rest as dropped, so a flood of refused mail cannot fill the database. The statements
are portable: the window's row is created if missing, then read with ``FOR UPDATE`` (a row lock
on PostgreSQL, where several SMTP servers may record at once; SQLite has a single writer), so
two writers cannot both take the last places.

``list_refusals`` is the account-scoped, newest-first read: an opaque cursor (the last row's time
and id) pages through it, so rows recorded meanwhile neither repeat nor shift a page.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.errors import Invalid
from conduit.storage.models import Domain, Refusal, RefusalWindow

WINDOW = timedelta(hours=1)
MAX_LIMIT = 200


@dataclass(frozen=True)
class RefusalRecord:
    """One refusal to record. ``account_id`` None: the recipient matched no webhook, and the
    account is the one whose verified domain it is (none: nothing is recorded)."""

    reason: str
    reply_code: int
    reply_text: str
    sender: str
    recipient: str
    client_ip: str
    account_id: str | None = None
    webhook_id: str | None = None
    detail: str = ""
    refused_at: datetime | None = None


@dataclass(frozen=True)
class RefusalPage:
    items: list[Refusal]
    next_cursor: str | None


def record_batch(session: Session, records: Sequence[RefusalRecord], *, cap: int) -> None:
    """Store ``records`` within each account's hourly cap; count the others as dropped."""
    owners = _domain_owners(session, {_domain(r.recipient) for r in records if r.account_id is None})
    by_window: dict[tuple[str, datetime], list[RefusalRecord]] = defaultdict(list)
    for record in records:
        account_id = record.account_id or owners.get(_domain(record.recipient))
        if account_id is None:
            continue
        at = record.refused_at or now()
        by_window[(account_id, window_of(at))].append(record)
    for (account_id, window), group in by_window.items():
        _record_window(session, account_id, window, group, cap=cap)


def window_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _record_window(session: Session, account_id: str, window: datetime, group: list[RefusalRecord], *,
                   cap: int) -> None:
    key = (RefusalWindow.account_id == account_id, RefusalWindow.window_start == window)
    recorded = session.scalar(select(RefusalWindow.recorded).where(*key).with_for_update())
    if recorded is None:  # another writer may create it at the same time: then theirs is read
        dialect_insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(dialect_insert(RefusalWindow).values(
            account_id=account_id, window_start=window, recorded=0, dropped=0).on_conflict_do_nothing())
        recorded = session.scalar(select(RefusalWindow.recorded).where(*key).with_for_update()) or 0
    kept = group[:max(0, cap - recorded)]
    session.execute(update(RefusalWindow).where(*key).values(
        recorded=RefusalWindow.recorded + len(kept), dropped=RefusalWindow.dropped + len(group) - len(kept)))
    if kept:
        session.execute(insert(Refusal), [_row(account_id, record) for record in kept])


def _row(account_id: str, record: RefusalRecord) -> dict[str, Any]:
    return {"id": new_id("ref"), "account_id": account_id, "refused_at": record.refused_at or now(),
            "reason": record.reason[:32], "detail": record.detail[:2000], "reply_code": record.reply_code,
            "reply_text": record.reply_text[:512], "sender": record.sender[:320],
            "recipient": record.recipient[:320], "client_ip": record.client_ip[:64], "webhook_id": record.webhook_id}


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def _domain_owners(session: Session, names: set[str]) -> dict[str, str]:
    """The account of each verified domain among ``names`` (operators' public domains have none)."""
    names.discard("")
    if not names:
        return {}
    rows = session.execute(select(Domain.name, Domain.account_id).where(
        Domain.name.in_(names), Domain.verified.is_(True), Domain.account_id.is_not(None)))
    return {name: account_id for name, account_id in rows if account_id is not None}


async def list_refusals(session: AsyncSession, account_id: str, *, cursor: str | None = None, limit: int = 50,
                        recipient: str | None = None, sender: str | None = None, after: datetime | None = None,
                        before: datetime | None = None, webhook_id: str | None = None) -> RefusalPage:
    """The account's refusals, newest first, ``limit`` at a time from ``cursor`` (a page's
    ``next_cursor``). ``recipient`` and ``sender`` match whole addresses, case-insensitively;
    ``after`` and ``before`` bound ``refused_at`` (exclusive)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    query = select(Refusal).where(Refusal.account_id == account_id)
    if webhook_id is not None:
        query = query.where(Refusal.webhook_id == webhook_id)
    if recipient:
        query = query.where(func.lower(Refusal.recipient) == recipient.strip().lower())
    if sender is not None:
        query = query.where(func.lower(Refusal.sender) == sender.strip().lower())
    if after is not None:
        query = query.where(Refusal.refused_at > after)
    if before is not None:
        query = query.where(Refusal.refused_at < before)
    if cursor:
        at, last_id = _read_cursor(cursor)
        query = query.where(or_(Refusal.refused_at < at, and_(Refusal.refused_at == at, Refusal.id < last_id)))
    rows = list(await session.scalars(query.order_by(Refusal.refused_at.desc(), Refusal.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return RefusalPage(items=rows, next_cursor=_cursor(rows[-1]) if more else None)


async def dropped(session: AsyncSession, account_id: str, *, since: datetime | None = None) -> int:
    """How many of the account's refusals were not recorded (over the cap), in the windows kept."""
    query = select(func.coalesce(func.sum(RefusalWindow.dropped), 0)).where(RefusalWindow.account_id == account_id)
    if since is not None:
        query = query.where(RefusalWindow.window_start >= window_of(since))
    return int(await session.scalar(query) or 0)


async def purge(session: AsyncSession, *, older_than: timedelta) -> None:
    """Housekeeping: refusals and their hourly counts past retention."""
    cutoff = now() - older_than
    await session.execute(delete(Refusal).where(Refusal.refused_at < cutoff))
    await session.execute(delete(RefusalWindow).where(RefusalWindow.window_start < window_of(cutoff) - WINDOW))


async def cursor_after(session: AsyncSession, account_id: str, refusal_id: str) -> str | None:
    """The cursor of the page that follows the account's refusal ``refusal_id``; None when the
    account has no such refusal (purged meanwhile, or another account's)."""
    row = await session.scalar(select(Refusal).where(Refusal.account_id == account_id, Refusal.id == refusal_id))
    return _cursor(row) if row is not None else None


def _cursor(row: Refusal) -> str:
    return base64.urlsafe_b64encode(f"{row.refused_at.isoformat()}|{row.id}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, last_id = text.partition("|")
        moment = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("cursor is not one this API returned", field="cursor") from None
    if moment.tzinfo is None or not last_id:
        raise Invalid("cursor is not one this API returned", field="cursor")
    return moment, last_id
