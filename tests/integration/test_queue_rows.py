"""The delivery queue's statements (conduit/storage/sql/: on SQLite plain SQL on the sqlite3
cursor, on PostgreSQL typed text statements) write what the models read and read what the models
wrote: the same values, the same types, and datetimes that compare as SQLAlchemy's do."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import inspect, select

from conduit.clock import now
from conduit.services.messages import Incoming, Receipt, accept_batch
from conduit.storage.group_commit import GroupCommit
from conduit.storage.models import DeliveryJob, Message, Webhook
from conduit.worker.loop import Worker
from tests.factories import create_webhook, user

RAW = b"From: Ann <ann@example.org>\r\nSubject: caf\xc3\xa9\r\n\r\nbody\r\n"


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": "in.example", "allow_private_targets": True}


@pytest.fixture
async def webhook(client) -> dict:
    owner = await user(client)
    return await create_webhook(client, owner, "box@in.example", target_url="http://127.0.0.1:9/hook",
                                custom_headers={"X-Tenant": "ünï"})


@pytest.fixture
async def message_id(database, webhook) -> str:
    receipt = Receipt(mail_from="ann@example.org", rcpt_to=["box@in.example", "Other@in.example"],
                      remote_ip="2001:db8::1", helo="client.example", tls=True, auth_user="ann",
                      auth_results={"spf": {"result": "pass", "domain": "example.org"}, "dkim": [], "dmarc": "none"})
    incoming = Incoming(receipt=receipt, raw=RAW, targets={webhook["id"]: ["box@in.example"]})
    await GroupCommit(database, partial(accept_batch, database.queue)).write(incoming)
    return incoming.id


def _columns(obj) -> dict:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


async def test_an_accepted_message_and_its_job_read_back_through_the_models(database, webhook, message_id):
    async with database.sessions() as db:
        message = await db.get(Message, message_id)
        job = (await db.scalars(select(DeliveryJob).where(DeliveryJob.message_id == message_id))).one()

    assert (message.mail_from, message.rcpt_to, message.remote_ip, message.helo, message.tls, message.auth_user,
            message.size, message.raw) == ("ann@example.org", ["box@in.example", "Other@in.example"], "2001:db8::1",
                                           "client.example", True, "ann", len(RAW), RAW)
    assert message.auth_results == {"spf": {"result": "pass", "domain": "example.org"}, "dkim": [], "dmarc": "none"}
    assert abs(now() - message.received_at) < timedelta(minutes=1)
    assert (job.webhook_id, job.rcpt_to, job.status, job.attempts, job.locked_until, job.finished_at,
            job.last_error) == (webhook["id"], "box@in.example", "queued", 0, None, None, "")
    assert job.next_attempt_at == job.created_at == message.received_at


async def test_a_claim_reads_what_the_models_hold(settings, database, message_id):
    worker = Worker(settings=settings, database=database, crypto=None, client=None, renders=None)

    ((job, message, webhook),) = await worker._claim(10)

    async with database.sessions() as db:
        stored_job = (await db.scalars(select(DeliveryJob).where(DeliveryJob.message_id == message_id))).one()
        stored_message = await db.get(Message, message_id)
        stored_webhook = await db.get(Webhook, webhook.id)
    assert job._asdict() == _columns(stored_job)
    assert job.attempts == 1
    assert job.locked_until > now()
    assert message._asdict() == _columns(stored_message)
    assert webhook._asdict() == _columns(stored_webhook)
    assert webhook.custom_headers == {"X-Tenant": "ünï"}


async def test_stored_times_compare_in_queries_as_the_models_write_them(database, message_id):
    """On SQLite times are text: the hot path's must sort and compare like SQLAlchemy's own."""
    async with database.sessions() as db:
        job = (await db.scalars(select(DeliveryJob).where(DeliveryJob.message_id == message_id))).one()
        due = job.next_attempt_at

        async def due_between(low, high) -> bool:
            return bool(await db.scalar(select(DeliveryJob.id).where(
                DeliveryJob.id == job.id, DeliveryJob.next_attempt_at >= low, DeliveryJob.next_attempt_at < high)))

        assert await due_between(due, due + timedelta(microseconds=1))
        assert not await due_between(due + timedelta(microseconds=1), due + timedelta(seconds=1))
        assert not await due_between(due - timedelta(seconds=1), due)


async def test_a_raw_message_is_dropped_with_its_last_queued_job(client, settings, database):
    """finish_held with keep_raw False: the message stays while another job still needs it and
    goes (with its finished jobs) with the last one; a job under a lease that ran out is left."""
    owner = await user(client)
    first = await create_webhook(client, owner, "one@in.example", target_url="http://127.0.0.1:9/hook")
    second = await create_webhook(client, owner, "two@in.example", target_url="http://127.0.0.1:9/hook")
    receipt = Receipt(mail_from="ann@example.org", rcpt_to=["one@in.example", "two@in.example"],
                      remote_ip="192.0.2.1", helo="client.example", tls=False, auth_user=None)
    incoming = Incoming(receipt=receipt, raw=RAW,
                        targets={first["id"]: ["one@in.example"], second["id"]: ["two@in.example"]})
    await GroupCommit(database, partial(accept_batch, database.queue)).write(incoming)
    worker = Worker(settings=settings, database=database, crypto=None, client=None, renders=None)
    claimed = {webhook.id: job for job, _, webhook in await worker._claim(10)}
    to_first, to_second = claimed[first["id"]], claimed[second["id"]]

    async def finish(job, **changes) -> set[str]:
        return await database.run(database.queue.finish_held, [job._replace(**changes)], status="delivered",
                                     keep_raw=False)

    async def stored() -> tuple[bool, dict[str, str]]:
        async with database.sessions() as db:
            jobs = (await db.execute(select(DeliveryJob.id, DeliveryJob.status)
                                     .where(DeliveryJob.message_id == incoming.id))).all()
            return await db.get(Message, incoming.id) is not None, dict(jobs)

    assert await finish(to_first, locked_until=to_first.locked_until - timedelta(microseconds=1)) == set()
    assert await stored() == (True, {to_first.id: "queued", to_second.id: "queued"})
    assert await finish(to_first) == {to_first.id}
    assert await stored() == (True, {to_first.id: "delivered", to_second.id: "queued"})
    assert await finish(to_second) == {to_second.id}
    assert await stored() == (False, {})


async def test_jobs_of_one_message_finished_together_drop_it(client, settings, database):
    owner = await user(client)
    webhooks = [await create_webhook(client, owner, f"{name}@in.example", target_url="http://127.0.0.1:9/hook")
                for name in ("one", "two")]
    receipt = Receipt(mail_from="ann@example.org", rcpt_to=["one@in.example", "two@in.example"],
                      remote_ip="192.0.2.1", helo="client.example", tls=False, auth_user=None)
    incoming = Incoming(receipt=receipt, raw=RAW, targets={w["id"]: [w["address"]] for w in webhooks})
    await GroupCommit(database, partial(accept_batch, database.queue)).write(incoming)
    worker = Worker(settings=settings, database=database, crypto=None, client=None, renders=None)
    jobs = [job for job, _, _ in await worker._claim(10)]

    finished = await database.run(database.queue.finish_held, jobs, status="delivered", keep_raw=False)

    assert finished == {job.id for job in jobs} and len(finished) == 2
    async with database.sessions() as db:
        assert await db.get(Message, incoming.id) is None
        assert not (await db.scalars(select(DeliveryJob.id).where(DeliveryJob.message_id == incoming.id))).all()
