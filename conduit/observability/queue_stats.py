"""The delivery queue's depth and its oldest job's age, read from the database when Prometheus
scrapes (one indexed query), so every role reports the same numbers, whoever queued the mail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conduit.clock import now
from conduit.storage.models import DeliveryJob

log = logging.getLogger("conduit.metrics")
QUERY_TIMEOUT = 3.0  # seconds; a scrape without the queue's numbers beats a scrape that hangs
_QUEUED = select(func.count(), func.min(DeliveryJob.created_at)).where(DeliveryJob.status == "queued")


class QueueStats:
    """``await refresh()`` before each scrape; ``collect()`` reports what it read (nothing when
    the database did not answer: a missing series, not a false zero)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._read: tuple[int, float] | None = None

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(QUERY_TIMEOUT), self.sessions() as db:
                count, oldest = (await db.execute(_QUEUED)).one()
        except Exception as exc:  # noqa: BLE001 - the scrape goes on without these two
            log.warning("event=queue_stats_failed error=%r", exc)
            self._read = None
            return
        self._read = (count, max(0.0, (now() - oldest).total_seconds()) if oldest else 0.0)

    def collect(self) -> Iterator[Metric]:
        if self._read is None:
            return
        count, age = self._read
        yield GaugeMetricFamily("conduit_queue_jobs", "Delivery jobs waiting (due now or for a retry).", value=count)
        yield GaugeMetricFamily("conduit_queue_oldest_job_age_seconds",
                                "Age of the oldest waiting delivery job (0 when none waits).", value=age)
