"""The SMTP server's cache of routes, so that RCPT does not query the database for every message,
and how it learns at once that routing data changed.

Only found routes are kept: an address that matched no webhook is looked up again every time, so a
webhook created by any process takes mail at once (a cached miss would refuse mail with 550, which
senders do not retry). A cached route is forgotten as soon as routing data changes anywhere:

- in this process: SQLAlchemy session events see any write to webhooks, SMTP policies or
  domains, and the deletion of an account (its webhooks go by cascade), whichever code path makes
  it; the caches forget their routes once that transaction has committed;
- in a worker process of `conduit serve`: the same events there, told to the serve process
  through a pipe (conduit/wake.py);
- in any other process, on PostgreSQL: the transaction that changes routing data sends
  ``NOTIFY conduit_routes``, which every SMTP process LISTENs to.

``seconds`` (CONDUIT_ROUTE_CACHE_SECONDS) remains the bound for what none of these report: a
change written without Conduit's ORM sessions, or a NOTIFY missed while the listening connection
was down.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from conduit.services import routing
from conduit.storage.database import Database, database_of
from conduit.storage.models import Account, Domain, SmtpPolicy, Webhook

MAX_ENTRIES = 10_000  # a bound on memory, whatever recipients senders make up for catch-alls
ROUTES_CHANNEL = "conduit_routes"

_ROUTING_MODELS = (Webhook, SmtpPolicy, Domain)
_ROUTING_TABLES = frozenset(model.__tablename__ for model in _ROUTING_MODELS)
_CHANGED = "conduit.routes_changed"  # Session.info flag: this transaction wrote routing data
_WATCHER = "conduit_route_changes"  # the engine's execution option naming its RouteChanges


class RouteChanges:
    """What one process knows of changes to routing data: a generation, moved on by every change
    (a route read in an older generation may be stale), and whom to tell."""

    def __init__(self) -> None:
        self._generations = itertools.count(1)
        self.generation = 0
        self._subscribers: list[Callable[[], None]] = []

    def changed(self) -> None:
        """Routing data changed (committed here, or reported by another process). Also called
        from the threads that commit on SQLite (``Database.run``): ``next`` is atomic."""
        self.generation = next(self._generations)

    def committed(self) -> None:
        """This process committed a change: its caches forget, and other processes are told."""
        self.changed()
        for subscriber in self._subscribers:
            subscriber()

    def subscribe(self, tell: Callable[[], None]) -> None:
        """Call ``tell`` after each change this process commits (a worker tells `conduit serve`)."""
        self._subscribers.append(tell)

    def watch(self, database: Database) -> None:
        """Learn of the changes committed through sessions on ``database``'s engines."""
        for sync_engine in database.sync_engines():
            sync_engine.update_execution_options(**{_WATCHER: self})


class RouteCache:
    """Routes by recipient address, each trusted for ``seconds`` unless routing data changes; at
    most ``max_entries`` (the oldest go first). One per SMTP server: its sessions share it."""

    def __init__(self, seconds: float, changes: RouteChanges, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self.changes = changes
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, routing.Route]] = {}  # oldest first
        self._generation = changes.generation

    async def route(self, sessions: async_sessionmaker[AsyncSession], address: str) -> routing.Route | None:
        """``routing.route`` for this address, from the cache when a fresh entry holds it."""
        key = routing.normalized(address)
        generation = self.changes.generation
        if self._generation != generation:
            self._entries.clear()
            self._generation = generation
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() < entry[0]:
            return entry[1]
        async with sessions() as db:
            found = await routing.route(db, key)
        # Not kept if routing data changed while the query ran: it may have read the old rows.
        if found is not None and self.seconds > 0 and generation == self.changes.generation:
            self._entries.pop(key, None)
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (time.monotonic() + self.seconds, found)
        return found


def _mark(session: Session) -> None:
    """This transaction writes routing data: other processes hear of it when it commits."""
    if not session.info.get(_CHANGED):
        session.info[_CHANGED] = True
        if (database := database_of(session)) is not None:
            database.announce(session, ROUTES_CHANNEL)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _: UOWTransaction) -> None:
    """Objects written (the API's creates, updates and deletes); a deleted account takes its
    webhooks with it (foreign key cascade)."""
    written = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(o, _ROUTING_MODELS) for o in written) or any(isinstance(o, Account) for o in session.deleted):
        _mark(session)


@event.listens_for(Session, "do_orm_execute")
def _executing(state: ORMExecuteState) -> None:
    """Statements that bypass the unit of work: update(Webhook) (deactivation, key rotation),
    delete(Domain) (verification voids other claims), and any other bulk write."""
    statement = state.statement
    if statement.is_dml:
        table = getattr(getattr(statement, "table", None), "name", None)
        if table in _ROUTING_TABLES or (table == Account.__tablename__ and statement.is_delete):
            _mark(state.session)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # After the commit: a route read before it is not kept (see RouteCache.route), one read after
    # it sees the change. A savepoint's release also lands here; the flag stays for the real commit.
    if session.info.get(_CHANGED):
        bind = session.get_bind()
        watcher = bind.get_execution_options().get(_WATCHER) if bind is not None else None
        if isinstance(watcher, RouteChanges):
            watcher.committed()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)
