"""The lease fence (the queue's finish_held and still_held, conduit/services/deliveries.py)
against the real database: an attempt whose job was taken again after its lease ran out is not
recorded, so each delivery is logged once, whichever attempt is recorded first, delivered or
failed, and also when both attempts end up in one group commit."""

from __future__ import annotations

import functools
from datetime import timedelta
from functools import partial

import pytest

from conduit.net.http_client import HttpOutcome
from conduit.services.deliveries import Attempt, record_attempts
from conduit.services.messages import Incoming, Receipt, accept_batch
from conduit.services.retry import decide
from conduit.storage.group_commit import GroupCommit
from conduit.worker.loop import Worker
from tests.factories import create_webhook, user


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": "in.example", "allow_private_targets": True, "retry_schedule": "0,60"}


@pytest.fixture
async def owner(client):
    return await user(client)


@pytest.fixture
async def webhook(client, owner) -> dict:
    return await create_webhook(client, owner, "box@in.example", target_url="http://127.0.0.1:9/hook")


@pytest.fixture
async def queued(database, webhook) -> None:
    """One message for the webhook, queued."""
    receipt = Receipt(mail_from="ann@example.org", rcpt_to=["box@in.example"], remote_ip="192.0.2.1",
                      helo="client.example", tls=False, auth_user=None)
    await GroupCommit(database, partial(accept_batch, database.queue)).write(
        Incoming(receipt=receipt, raw=b"Subject: hi\r\n\r\nhi\r\n", targets={webhook["id"]: ["box@in.example"]}))


def _worker(settings, database, *, lease: float) -> Worker:
    """A worker whose claims hold jobs for ``lease`` seconds (0: taken again by the next claim).
    It only claims here: no HTTP client needed."""
    worker = Worker(settings=settings, database=database, crypto=None, client=None, renders=None)
    worker.lease = timedelta(seconds=lease)
    return worker


def _attempt(claimed, settings, status: int = 200) -> Attempt:
    job, message, webhook = claimed
    outcome = HttpOutcome(status=status, duration_ms=3, error=None, response_excerpt="", retry_after=None)
    decision = decide(status=status, error=None, attempt=job.attempts, retry_after=None,
                      schedule=settings.retry_delays)
    return Attempt(job=job, message=message, webhook=webhook, outcome=outcome, decision=decision)


async def _statuses(client, owner, webhook_id: str) -> list[str]:
    response = await client.get(f"/webhooks/{webhook_id}/logs", headers=owner.headers)
    assert response.status_code == 200, response.text
    return [log["status"] for log in response.json()]


@pytest.mark.parametrize("stalled_status", [200, 500])
@pytest.mark.parametrize("stalled_records_first", [True, False])
async def test_an_attempt_whose_lease_was_taken_over_is_not_recorded(settings, database, client, owner, webhook,
                                                                     queued, stalled_status, stalled_records_first):
    (stalled,) = await _worker(settings, database, lease=0)._claim(10)
    (taker,) = await _worker(settings, database, lease=60)._claim(10)
    assert taker[0].id == stalled[0].id  # the lease ran out: another worker took the job
    recorder = GroupCommit(database, functools.partial(record_attempts, database.queue, settings=settings))
    attempts = [_attempt(stalled, settings, stalled_status), _attempt(taker, settings)]

    for attempt in attempts if stalled_records_first else attempts[::-1]:
        await recorder.write(attempt)

    assert await _statuses(client, owner, webhook["id"]) == ["delivered"]


@pytest.mark.parametrize("earlier_first", [True, False])
async def test_a_job_taken_twice_is_recorded_once_when_both_attempts_are_recorded_together(
        settings, database, client, owner, webhook, queued, earlier_first):
    worker = _worker(settings, database, lease=0)
    (earlier,) = await worker._claim(10)
    (later,) = await worker._claim(10)  # the first lease ran out while that attempt was still running
    attempts = [_attempt(earlier, settings, 500), _attempt(later, settings)]

    # one group commit holding both
    await database.run(partial(record_attempts, database.queue), attempts if earlier_first else attempts[::-1],
                       settings=settings)

    assert await _statuses(client, owner, webhook["id"]) == ["delivered"]
