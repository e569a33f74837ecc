"""Recording refusals (conduit/storage/refusals.py) without holding up the SMTP reply.

``RefusalRecorder.record`` returns at once: the refusal is written in the background, many to a
transaction (group commit), and an error writing it is logged, never raised. A recipient that
matched no webhook is attributed in the writer (the account of its verified domain), so the SMTP
server asks the database nothing more before it answers. What waits to be written is bounded
too: past ``max_pending`` refusals are counted (``lost``) and logged, not queued.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial

from conduit.services.route_cache import RouteCache
from conduit.storage.database import Database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.refusals import RefusalRecord, record_batch

log = logging.getLogger("conduit.smtp")

MAX_PENDING = 10_000
DRAIN_TIMEOUT = 5.0

# Why mail was refused (the ``reason`` of a refusal).
UNKNOWN_RECIPIENT = "unknown_recipient"
INACTIVE_WEBHOOK = "inactive_webhook"
POLICY = "policy"
SPAM = "spam"
SPAM_CHECK_UNAVAILABLE = "spam_check_unavailable"
TOO_BIG = "too_big"
TOO_MANY_RECIPIENTS = "too_many_recipients"
RECEIVER_REFUSED = "receiver_refused"  # a synchronous webhook's receiver answered 4xx: 550 5.7.1


class RefusalRecorder:
    """Writes refusals in the background; ``cap`` is CONDUIT_REFUSALS_PER_HOUR (0: none kept)."""

    def __init__(self, database: Database, *, cap: int, routes: RouteCache | None = None,
                 max_pending: int = MAX_PENDING) -> None:
        self.database = database
        self.routes = routes  # to attribute a refusal made before its recipient was routed
        self.cap = cap
        self.max_pending = max_pending
        self.lost = 0  # refusals not even queued for writing (more than max_pending waiting)
        self._commits: GroupCommit[RefusalRecord] = GroupCommit(database, partial(record_batch, cap=cap),
                                                                durable=False)
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, refusal: RefusalRecord) -> None:
        """Queue ``refusal`` for writing; never raises, never waits."""
        if self.cap <= 0:
            return
        if len(self._pending) >= self.max_pending:
            self.lost += 1
            if self.lost % 1000 == 1:
                log.warning("event=refusals_not_recorded reason=backlog lost=%d", self.lost)
            return
        try:
            task = asyncio.get_running_loop().create_task(self._write(refusal), name="refusal")
        except RuntimeError as exc:  # no loop: nothing can be written (never in the SMTP server)
            log.error("event=refusal_not_recorded reason=%s error=%r", refusal.reason, exc)
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, refusal: RefusalRecord) -> None:
        try:
            if refusal.account_id is None and refusal.reason == TOO_MANY_RECIPIENTS and self.routes is not None:
                route = await self.routes.route(self.database.sessions, refusal.recipient)
                if route is not None:
                    refusal = replace(refusal, account_id=route.account_id, webhook_id=route.webhook_id)
            await self._commits.write(refusal)
        except Exception as exc:  # noqa: BLE001 - the refusal stands even if its record is lost
            log.error("event=refusal_not_recorded reason=%s error=%r", refusal.reason, exc)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait (at most ``timeout``) for the refusals already queued: at shutdown."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
