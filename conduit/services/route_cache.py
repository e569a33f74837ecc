"""The SMTP server's cache of routes, so that RCPT does not query the database for every message.

Only found routes are kept: an address that matched no webhook is looked up again every time, so a
webhook created by any process takes mail at once (a cached miss would refuse mail with 550, which
senders do not retry). An entry is trusted for ``seconds`` (CONDUIT_ROUTE_CACHE_SECONDS): that is
how late an SMTP process sees a change made by another process (another node, `conduit serve`'s
worker processes deactivating a webhook). A change committed by this process clears every cache at
once: SQLAlchemy session events see any write to webhooks, SMTP policies or domains, and the
deletion of an account (its webhooks go by cascade), whichever code path makes it.
"""

from __future__ import annotations

import itertools
import time

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from conduit.db.models import Account, Domain, SmtpPolicy, Webhook
from conduit.services import routing

MAX_ENTRIES = 10_000  # a bound on memory, whatever recipients senders make up for catch-alls

_ROUTING_MODELS = (Webhook, SmtpPolicy, Domain)
_ROUTING_TABLES = frozenset(model.__tablename__ for model in _ROUTING_MODELS)
_CHANGED = "conduit.routes_changed"  # Session.info flag: this transaction wrote routing data
_generations = itertools.count(1)
_generation = 0  # changed by every invalidation; a cache from an older generation is stale


class RouteCache:
    """Routes by recipient address, each trusted for ``seconds``; at most ``max_entries`` (the
    oldest go first). One per SMTP server: its sessions share it."""

    def __init__(self, seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, routing.Route]] = {}  # oldest first
        self._generation = _generation

    async def route(self, sessions: async_sessionmaker[AsyncSession], address: str) -> routing.Route | None:
        """``routing.route`` for this address, from the cache when a fresh entry holds it."""
        key = routing.normalized(address)
        if self._generation != _generation:
            self._entries.clear()
            self._generation = _generation
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() < entry[0]:
            return entry[1]
        generation = _generation
        async with sessions() as db:
            found = await routing.route(db, key)
        # Not kept if routing data changed while the query ran: it may have read the old rows.
        if found is not None and self.seconds > 0 and generation == _generation:
            self._entries.pop(key, None)
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (time.monotonic() + self.seconds, found)
        return found


def invalidate() -> None:
    """Every cache in this process forgets its routes."""
    global _generation
    _generation = next(_generations)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _: UOWTransaction) -> None:
    """Objects written (the API's creates, updates and deletes); a deleted account takes its
    webhooks with it (foreign key cascade)."""
    written = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(o, _ROUTING_MODELS) for o in written) or any(isinstance(o, Account) for o in session.deleted):
        session.info[_CHANGED] = True


@event.listens_for(Session, "do_orm_execute")
def _executing(state: ORMExecuteState) -> None:
    """Statements that bypass the unit of work: update(Webhook) (deactivation, key rotation),
    delete(Domain) (verification voids other claims), and any other bulk write."""
    statement = state.statement
    if statement.is_dml:
        table = getattr(getattr(statement, "table", None), "name", None)
        if table in _ROUTING_TABLES or (table == Account.__tablename__ and statement.is_delete):
            state.session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # After the commit: a route read before it is not kept (see RouteCache.route), one read after
    # it sees the change. A savepoint's release also lands here; the flag stays for the real commit.
    if session.info.get(_CHANGED):
        invalidate()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)
