"""Group commit: writes that arrive while a commit is running are done together in the next
transaction, so concurrent SMTP sessions (and concurrent deliveries) share a transaction and
its fsync instead of queueing for the database one by one. A lone write is committed at once:
no added latency.

``write`` returns only once the transaction holding the item committed (the SMTP server's
``250`` waits for it). If a group's transaction fails, its items are retried one per
transaction, so one bad item cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from conduit.storage.database import Database

log = logging.getLogger("conduit.storage")
T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit(Generic[T]):
    """Writes items with ``write_batch(session, items)``, as many per transaction as have arrived
    (at most ``max_items``, and ``max_bytes`` by ``size_of``). ``write_batch`` is synchronous: it
    runs through ``Database.run`` (on SQLite, the whole transaction in one trip to a thread)."""

    def __init__(self, database: Database,
                 write_batch: Callable[[Session, Sequence[T]], None], *,
                 max_items: int = 200, max_bytes: int = 64 * 1024 * 1024,
                 size_of: Callable[[T], int] = lambda _: 0, durable: bool = True) -> None:
        self.database = database
        self.write_batch = write_batch
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.durable = durable  # Database.run's: False when a commit lost to a machine crash costs nothing
        self._waiting: list[_Waiting[T]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, item: T) -> None:
        """Return once ``item`` is committed; raise if it could not be."""
        waiting = _Waiting(item)
        # Retrieved even when the caller is gone, so a failure is not reported as unhandled.
        waiting.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.append(waiting)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="group-commit")
        # Shielded: a caller that is cancelled (an SMTP client hanging up) does not cancel the
        # commit its item is part of.
        await asyncio.shield(waiting.done)

    async def _flush_all(self) -> None:
        while self._waiting:
            group = self._take_group()
            try:
                await self._commit(group)
            except Exception as exc:  # noqa: BLE001 - retried one by one below
                if len(group) == 1:
                    _settle(group[0], exc)
                    continue
                log.warning("event=group_commit_failed items=%d error=%r", len(group), exc)
                for waiting in group:
                    try:
                        await self._commit([waiting])
                    except Exception as single:  # noqa: BLE001 - this item's caller sees the error
                        _settle(waiting, single)

    def _take_group(self) -> list[_Waiting[T]]:
        group: list[_Waiting[T]] = []
        size = 0
        while self._waiting and len(group) < self.max_items:
            item_size = self.size_of(self._waiting[0].item)
            if group and size + item_size > self.max_bytes:
                break
            group.append(self._waiting.pop(0))
            size += item_size
        return group

    async def _commit(self, group: list[_Waiting[T]]) -> None:
        await self.database.run(self.write_batch, [waiting.item for waiting in group], durable=self.durable)
        for waiting in group:
            _settle(waiting, None)


def _settle(waiting: _Waiting[Any], error: Exception | None) -> None:
    if waiting.done.done():
        return
    if error is None:
        waiting.done.set_result(None)
    else:
        waiting.done.set_exception(error)
