"""Retention of stored messages (CONDUIT_MESSAGE_RETENTION_DAYS): the housekeeping drops the
messages past it, a batch at a time, and never one that a queued delivery still needs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from conduit.clock import now
from conduit.config import load_settings
from conduit.services.maintenance import purge_messages
from conduit.storage.interfaces import PURGE_GRACE
from conduit.storage.models import Message
from tests.conftest import TEST_SECRET_KEY
from tests.factories import create_webhook, store_message, user


@pytest.fixture
def settings_overrides() -> dict:
    return {"public_domains": "in.example", "allow_private_targets": True}


async def _store(database, webhook_id: str, *, age: timedelta, status: str) -> str:
    return await store_message(database, webhook_id, "a@in.example", received_at=now() - age, status=status)


async def _stored(database) -> set[str]:
    async with database.sessions() as db:
        return set(await db.scalars(select(Message.id)))


async def test_the_purge_drops_expired_messages_in_batches_but_keeps_those_still_queued(client, database, settings):
    owner = await user(client)
    hook = (await create_webhook(client, owner, "a@in.example", target_url="http://127.0.0.1:9/hook"))["id"]
    expired = [await _store(database, hook, age=timedelta(days=4), status=status)
               for status in ("delivered", "failed", "delivered")]
    waiting = await _store(database, hook, age=timedelta(days=10), status="queued")
    recent = await _store(database, hook, age=timedelta(hours=1), status="delivered")

    assert settings.message_retention_days == 3  # the default
    assert await purge_messages(database, settings=settings, batch=2) == len(expired)
    assert await _stored(database) == {waiting, recent}


async def test_retention_zero_drops_every_finished_message_and_the_old_name_still_works(client, database,
                                                                                      database_url):
    owner = await user(client)
    hook = (await create_webhook(client, owner, "a@in.example", target_url="http://127.0.0.1:9/hook"))["id"]
    # Past PURGE_GRACE (a synchronous attempt's message has no job until the receiver answers),
    # which even retention 0 waits for; younger ones stay.
    finished = await _store(database, hook, age=PURGE_GRACE + timedelta(seconds=1), status="delivered")
    waiting = await _store(database, hook, age=PURGE_GRACE + timedelta(seconds=1), status="queued")
    young = await _store(database, hook, age=timedelta(seconds=1), status="delivered")
    settings = load_settings(database_url=database_url, secret_key=TEST_SECRET_KEY, keep_raw_days=0)
    assert settings.message_retention_days == 0

    assert await purge_messages(database, settings=settings) == 1
    assert await _stored(database) == {waiting, young}
    assert finished not in await _stored(database)
