"""Group commit: messages that finish DATA while a commit is running are stored together in
the next one, so concurrent SMTP sessions share a transaction (and an fsync) instead of queueing
for SQLite's write lock one by one. A lone message is committed at once: no added latency.

Each session still gets its ``250`` only after the transaction holding its message committed.
If a group's transaction fails, its messages are retried one per transaction, so one bad
message cannot turn its neighbours' replies into ``451``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conduit.db.engine import transaction
from conduit.services.messages import Incoming, accept_batch

log = logging.getLogger("conduit.smtp")
MAX_GROUP = 200  # messages per transaction
MAX_GROUP_BYTES = 64 * 1024 * 1024  # raw bytes per transaction


@dataclass
class _Waiting:
    item: Incoming
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, item: Incoming) -> None:
        """Return once ``item`` is committed; raise if it could not be."""
        waiting = _Waiting(item)
        # Retrieved even when the session is gone, so a failure is not reported as unhandled.
        waiting.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.append(waiting)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="group-commit")
        # Shielded: a client that hangs up does not cancel the commit its message is part of.
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
                log.warning("event=group_commit_failed messages=%d error=%r", len(group), exc)
                for waiting in group:
                    try:
                        await self._commit([waiting])
                    except Exception as single:  # noqa: BLE001 - this session answers 451
                        _settle(waiting, single)

    def _take_group(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        size = 0
        while self._waiting and len(group) < MAX_GROUP:
            if group and size + len(self._waiting[0].item.raw) > MAX_GROUP_BYTES:
                break
            waiting = self._waiting.pop(0)
            group.append(waiting)
            size += len(waiting.item.raw)
        return group

    async def _commit(self, group: list[_Waiting]) -> None:
        async with transaction(self.sessions) as db:
            await accept_batch(db, [waiting.item for waiting in group])
        for waiting in group:
            _settle(waiting, None)


def _settle(waiting: _Waiting, error: Exception | None) -> None:
    if waiting.done.done():
        return
    if error is None:
        waiting.done.set_result(None)
    else:
        waiting.done.set_exception(error)
