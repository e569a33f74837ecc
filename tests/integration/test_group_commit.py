"""Group commit (conduit/storage/group_commit.py, as the SMTP server uses it) against the real database:
concurrent messages share transactions, each store() returns only once its message is committed, and one message that
cannot be stored does not fail the others stored with it."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
from sqlalchemy import event, func, select

from conduit.services.messages import Incoming, Receipt, accept_batch
from conduit.storage.group_commit import GroupCommit
from conduit.storage.models import DeliveryJob, DeliveryLog, Message
from tests.factories import create_webhook, user


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": "in.example", "allow_private_targets": True}


def _incoming(webhook_id: str, n: int, *, rejected: list[tuple[str, str]] | None = None) -> Incoming:
    receipt = Receipt(mail_from=f"sender{n}@example.org", rcpt_to=["box@in.example"], remote_ip="192.0.2.1",
                      helo="client.example", tls=False, auth_user=None)
    return Incoming(receipt=receipt, raw=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
                    targets={webhook_id: ["box@in.example"]}, rejected=rejected or [])


@pytest.fixture
async def webhook_id(client) -> str:
    owner = await user(client)
    return (await create_webhook(client, owner, "box@in.example", target_url="http://127.0.0.1:9/hook"))["id"]


async def _count(sessions, model, *where) -> int:
    async with sessions() as db:
        return await db.scalar(select(func.count()).select_from(model).where(*where))


async def test_concurrent_messages_share_transactions(database, webhook_id):
    sessions = database.sessions
    commits = []
    for sync_engine in database.sync_engines():
        event.listen(sync_engine, "commit", lambda conn: commits.append(1))
    committer = GroupCommit(database, partial(accept_batch, database.queue))
    items = [_incoming(webhook_id, n) for n in range(40)]

    await asyncio.gather(*(committer.write(item) for item in items))

    assert await _count(sessions, Message, Message.id.in_([i.id for i in items])) == 40
    assert await _count(sessions, DeliveryJob, DeliveryJob.message_id.in_([i.id for i in items])) == 40
    assert len(commits) < 40 / 2  # the first message alone, then the rest in groups


async def test_store_returns_only_after_the_commit(database, webhook_id):
    sessions = database.sessions
    committer = GroupCommit(database, partial(accept_batch, database.queue))
    items = [_incoming(webhook_id, n) for n in range(10)]

    async def store_then_look(item: Incoming) -> int:
        await committer.write(item)
        return await _count(sessions, Message, Message.id == item.id)  # another connection's view

    assert await asyncio.gather(*(store_then_look(item) for item in items)) == [1] * 10


async def test_a_message_that_cannot_be_stored_fails_alone(database, webhook_id):
    sessions = database.sessions
    committer = GroupCommit(database, partial(accept_batch, database.queue))
    good = [_incoming(webhook_id, n, rejected=[(webhook_id, "DKIM required: no signature")]) for n in range(4)]
    bad = _incoming("whk_does_not_exist", 99)  # its job's foreign key fails

    results = await asyncio.gather(*(committer.write(item) for item in [*good[:2], bad, *good[2:]]),
                                   return_exceptions=True)

    assert [r is None for r in results] == [True, True, False, True, True]
    assert await _count(sessions, Message, Message.id.in_([i.id for i in good])) == 4
    assert await _count(sessions, Message, Message.id == bad.id) == 0
    assert await _count(sessions, DeliveryLog, DeliveryLog.smtp_message_id.in_([i.id for i in good]),
                        DeliveryLog.status == "rejected") == 4
