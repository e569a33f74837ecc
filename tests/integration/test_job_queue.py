"""The delivery queue's implementations (conduit/storage/queue_sqlite.py, queue_postgres.py), one
test body for both, against a real SQLite file and the real PostgreSQL: claims cap each webhook
and rotate between webhooks, leases are renewed only while held, finishing respects the lease, and
held, rescheduled, failed and redelivered jobs come back (or not) as they should."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from conduit.clock import new_id, now
from conduit.storage.database import open_database
from conduit.storage.interfaces import new_job
from conduit.storage.models import DeliveryJob, Message
from tests.factories import create_webhook, user

LEASE = timedelta(seconds=30)


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": "in.example", "allow_private_targets": True}


@pytest.fixture
async def hooks(client) -> list[str]:
    owner = await user(client)
    return [(await create_webhook(client, owner, f"{name}@in.example", target_url="http://127.0.0.1:9/hook"))["id"]
            for name in ("a", "b", "c")]


def _message(at, recipients: list[str]) -> dict:
    return {"id": new_id("msg"), "received_at": at, "mail_from": "ann@example.org", "rcpt_to": recipients,
            "remote_ip": "192.0.2.1", "helo": "client.example", "tls": False, "auth_user": None, "size": 3,
            "auth_results": {}, "raw": b"x\r\n"}


async def _queue(database, webhook_id: str, count: int, *, age: timedelta = timedelta(seconds=1),
                 recipients: list[str] | None = None) -> list[str]:
    """``count`` messages for one webhook, due since ``age`` ago (a millisecond apart, so all are
    due by default even when the claim follows within a millisecond); their job ids, oldest first."""
    at = now() - age
    messages = [_message(at + timedelta(milliseconds=n), recipients or ["a@in.example"]) for n in range(count)]
    jobs = [new_job(m["id"], webhook_id, m["rcpt_to"], m["received_at"]) for m in messages]
    await database.run(database.queue.accept, messages=messages, jobs=jobs)
    return [job["id"] for job in jobs]


async def _claim(database, limit: int = 50, per_webhook: int = 16, lease: timedelta = LEASE):
    return await database.run(database.queue.claim, limit=limit, lease=lease, per_webhook=per_webhook)


async def _count(database, *where) -> int:
    async with database.sessions() as db:
        return await db.scalar(select(func.count()).select_from(DeliveryJob).where(*where))


async def test_a_claim_takes_no_more_than_each_webhooks_cap(database, hooks):
    a, b, _ = hooks
    await _queue(database, a, 10, age=timedelta(minutes=5))
    await _queue(database, b, 2)

    first = await _claim(database, per_webhook=3)
    again = await _claim(database, per_webhook=3)

    assert sorted(webhook.id == a for _, _, webhook in first) == [False, False, True, True, True]
    assert again == []  # a is at its cap, b has nothing left


async def test_claims_rotate_between_webhooks_whatever_their_backlog(database, hooks):
    a, b, c = hooks
    await _queue(database, a, 10, age=timedelta(minutes=5))  # a big, old backlog
    await _queue(database, b, 3, age=timedelta(minutes=1))
    await _queue(database, c, 1)

    claimed = await _claim(database, limit=5)

    by_webhook = {hook: sum(webhook.id == hook for _, _, webhook in claimed) for hook in hooks}
    assert by_webhook == {a: 2, b: 2, c: 1}


async def test_jobs_under_an_expired_lease_leave_their_webhook_a_slot(database, hooks):
    a, _, _ = hooks
    await _queue(database, a, 3)
    assert len(await _claim(database, per_webhook=2, lease=timedelta(0))) == 2  # their worker died at once

    retaken = await _claim(database, per_webhook=2)

    assert len(retaken) == 2


async def test_the_next_due_time_shows_jobs_waiting_for_a_webhooks_slot(database, hooks):
    a, _, _ = hooks
    assert await _next_due(database) is None
    await _queue(database, a, 3, age=timedelta(minutes=5))
    await _claim(database, per_webhook=2)

    waiting = await _next_due(database)  # a's third job: due, left for want of a slot

    assert waiting is not None and waiting < now() - timedelta(minutes=4)
    await _claim(database, per_webhook=3)
    assert await _next_due(database) is None  # every queued job is held


async def _next_due(database):
    async with database.sessions() as db:
        return await db.run_sync(database.queue.next_due_at)


async def test_a_renewed_lease_is_the_one_that_finishes_the_job(database, hooks):
    a, _, _ = hooks
    await _queue(database, a, 1)
    ((job, _, _),) = await _claim(database, lease=timedelta(seconds=5))

    renewed = await database.run(database.queue.renew, [job], lease=LEASE)

    assert renewed[job.id] > job.locked_until
    assert await _claim(database, lease=timedelta(seconds=5)) == []
    assert await database.run(database.queue.finish_held, [job], status="delivered", keep_raw=True) == set()
    held = job._replace(locked_until=renewed[job.id])
    assert await database.run(database.queue.still_held, [held]) == {job.id}
    assert await database.run(database.queue.finish_held, [held], status="delivered", keep_raw=True) == {job.id}


async def test_a_lease_taken_over_is_not_renewed(database, hooks):
    a, _, _ = hooks
    await _queue(database, a, 1)
    ((stalled, _, _),) = await _claim(database, lease=timedelta(0))
    ((taker, _, _),) = await _claim(database)

    assert await database.run(database.queue.renew, [stalled], lease=LEASE) == {}
    assert await database.run(database.queue.still_held, [stalled, taker]) == {taker.id}


async def test_a_held_job_comes_back_without_spending_an_attempt_and_a_failed_one_never(database, hooks):
    a, b, _ = hooks
    (held_id,) = await _queue(database, a, 1)
    (failed_id,) = await _queue(database, b, 1)
    claimed = {job.id: job for job, _, _ in await _claim(database)}

    await database.run(database.queue.reschedule, claimed[held_id], delay=0, error="rate limited",
                       count_attempt=False)
    await database.run(database.queue.fail, claimed[failed_id], error="HTTP 500", keep_raw=False)

    ((again, _, _),) = await _claim(database)
    assert (again.id, again.attempts, again.last_error) == (held_id, 1, "rate limited")
    assert await _count(database, DeliveryJob.id == failed_id) == 0  # gone with its message
    async with database.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Message)) == 1


async def test_a_message_is_queued_again_to_the_recipients_routed_to_the_webhook(database, hooks):
    a, _, _ = hooks
    (job_id,) = await _queue(database, a, 1, recipients=["a@in.example", "a+news@in.example"])
    ((job, message, _),) = await _claim(database)
    assert job.recipients == ["a@in.example", "a+news@in.example"]
    await database.run(database.queue.finish_held, [job], status="delivered", keep_raw=True)

    recipients = await database.run(database.queue.recipients_of, message_id=message.id, webhook_id=a)
    again = await database.run(database.queue.enqueue, message_id=message.id, webhook_id=a,
                               recipients=recipients)

    ((redelivery, _, _),) = await _claim(database)
    assert (redelivery.id, redelivery.recipients, redelivery.rcpt_to) == (
        again, ["a@in.example", "a+news@in.example"], "a@in.example")
    assert again != job_id


async def test_purge_drops_old_messages_no_queued_job_needs(database, hooks):
    a, _, _ = hooks
    (old_done,) = await _queue(database, a, 1, age=timedelta(days=3))
    await _queue(database, a, 1, age=timedelta(days=3))  # still queued: kept
    ((job, _, _), _) = sorted(await _claim(database), key=lambda c: c[0].id != old_done)
    await database.run(database.queue.finish_held, [job], status="delivered", keep_raw=True)

    assert await database.run(database.queue.purge, keep_days=1, limit=10) == 1

    async with database.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Message)) == 1
    assert await _count(database, DeliveryJob.status == "queued") == 1


async def test_the_workers_statements_find_jobs_by_index_whatever_the_statistics(database, hooks):
    """A queue that grew after its statistics were taken (autovacuum behind, or off): each
    finish and claim would otherwise read the whole jobs table, slower as it grows."""
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL: SQLite's planner has no statistics to go stale")
    a, b, _ = hooks
    async with database.sessions() as db:
        await db.execute(text("ANALYZE delivery_jobs"))  # statistics of a nearly empty table
    await _queue(database, a, 300)
    await _queue(database, b, 300)

    def scans(session) -> tuple[int, int]:
        """This transaction's sequential and index scans of the jobs table."""
        return tuple(session.execute(text("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                                          " WHERE relname = 'delivery_jobs'")).one())

    def claim(session):
        return database.queue.claim(session, limit=20, lease=LEASE, per_webhook=20), scans(session)

    def record(session):
        database.queue.renew(session, jobs[:5], lease=LEASE)
        held = database.queue.still_held(session, jobs[5:10])
        finished = database.queue.finish_held(session, jobs[10:18], status="delivered", keep_raw=False)
        return held, finished, scans(session)

    def retry_and_give_up(session):
        database.queue.reschedule(session, jobs[18], delay=60, error="503")
        database.queue.fail(session, jobs[19], error="410 Gone", keep_raw=False)
        return scans(session)

    claimed, claim_scans = await database.run(claim)
    jobs = [job for job, _, _ in claimed]
    held, finished, record_scans = await database.run(record)
    retry_scans = await database.run(retry_and_give_up)

    assert len(jobs) == 20 and len(held) == 5 and len(finished) == 8
    assert claim_scans[0] == 0 and claim_scans[1] > 0
    assert record_scans[0] == 0 and record_scans[1] > 0
    assert retry_scans[0] == 0 and retry_scans[1] > 0


async def test_a_worker_frozen_inside_its_claim_does_not_stop_the_others_claiming(database, settings, hooks):
    """A worker stopped (SIGSTOP, a frozen VM) between two statements of its claim holds the
    claims' turn: PostgreSQL ends its session after the idle-transaction timeout a worker's
    connections carry, and another worker claims, the frozen one's job included."""
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL: SQLite's claims hold no lock across processes between statements")
    a, _, _ = hooks
    [job_id] = await _queue(database, a, 1)
    frozen = open_database(settings, lazy_commits=True, idle_transaction_timeout=0.5)
    other = open_database(settings, lazy_commits=True, idle_transaction_timeout=0.5)
    try:
        with pytest.raises(DBAPIError):
            async with frozen.transaction() as session:
                claimed = await session.run_sync(frozen.queue.claim, limit=1, lease=LEASE, per_webhook=16)
                assert [job.id for job, _, _ in claimed] == [job_id]
                # Frozen here: the other worker's claim must not wait for this transaction.
                taken = await asyncio.wait_for(_claim(other, limit=1), timeout=20)
                await session.execute(text("SELECT 1"))  # the session PostgreSQL ended
        assert [job.id for job, _, _ in taken] == [job_id]
    finally:
        await frozen.dispose()
        await other.dispose()
