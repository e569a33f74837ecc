"""Database unavailable while mail arrives (PostgreSQL): the SMTP server answers 451 4.3.0, never
250; once the database takes connections again, new mail is accepted and delivered, and so is mail
accepted before the outage whose delivery the outage held up.

The outage is real: the database is switched to ALLOW_CONNECTIONS false and every session on it
is terminated, from an admin connection to the `postgres` database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.factories import create_webhook
from tests.support.conversation import _eventually
from tests.support.pipeline import free_port, running
from tests.support.receiver import Reply, verify_signature
from tests.support.smtp_client import attempt, final, queued_id

PUBLIC = "in.example"
RCPT = f"box@{PUBLIC}"


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3,0.3"}


@pytest.fixture(autouse=True)
def _postgres_only(request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params.get("database_url") != "postgres":
        pytest.skip("PostgreSQL only: the outage is made with ALLOW_CONNECTIONS false")


def _admin_dsn(database_url: str) -> tuple[str, str]:
    """A plain libpq DSN to the `postgres` maintenance database, and the name of the test database."""
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), url.database


@asynccontextmanager
async def database_refusing_connections(database_url: str) -> AsyncIterator[None]:
    dsn, name = _admin_dsn(database_url)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


def _mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann <ann@sender.example>"
    message["To"] = f"box@{PUBLIC}"
    message["Subject"] = subject
    message.set_content("Hi there\n")
    return message


async def _delivered(client, owner, webhook_id: str, count: int, timeout: float = 20.0) -> list[dict]:
    """The webhook's delivery logs once ``count`` deliveries are recorded as delivered."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/webhooks/{webhook_id}/logs", headers=owner.headers)
        assert response.status_code == 200, response.text
        delivered = [log for log in response.json() if log["status"] == "delivered"]
        if len(delivered) >= count:
            return delivered
        assert asyncio.get_running_loop().time() < deadline, f"{len(delivered)} of {count} deliveries recorded"
        await asyncio.sleep(0.05)


async def test_mail_during_a_database_outage_gets_451_and_mail_after_it_is_delivered(
        settings, database_url, client, alice, receiver):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        before = await attempt(settings.smtp_port, _mail("before the outage"), RCPT)
        assert final(before)[:2] == ("DATA", 250), before
        await _delivered(client, alice, webhook["id"], 1)  # recorded, not just sent: nothing in flight

        async with database_refusing_connections(database_url):
            during = [await attempt(settings.smtp_port, _mail(f"during the outage {i}"), RCPT) for i in range(3)]

        after = await attempt(settings.smtp_port, _mail("after the outage"), RCPT)
        requests = await receiver.wait_for(2, timeout=20)
        logs = await _delivered(client, alice, webhook["id"], 2)

    for replies in during:
        command, code, text = final(replies)
        assert command in ("RCPT", "DATA"), replies
        assert (code, text.split(" ", 1)[0]) == (451, "4.3.0"), replies
        # RCPT may be answered from the route cache (CONDUIT_ROUTE_CACHE_SECONDS); the message never is.
        assert all(c != 250 for step, c, _ in replies if step == "DATA"), replies
    assert final(after)[:2] == ("DATA", 250), after
    subjects = [verify_signature(webhook["secret"], r)["subject"] for r in requests]
    assert subjects == ["before the outage", "after the outage"]
    assert len(logs) == 2


@pytest.mark.parametrize("settings_overrides", [{
    "smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
    "inbound_auth_checks": False,
    # The first retry falls inside the outage; a 7 s lease: a delivery whose outcome could not be
    # recorded is taken again soon after the database returns.
    "retry_schedule": "0,3,1,1,1,1", "delivery_timeout": 2, "delivery_lease": 7}])
async def test_mail_accepted_before_an_outage_is_delivered_after_it(settings, database_url, engine, client, alice,
                                                                    receiver):
    webhook = await create_webhook(client, alice, RCPT, receiver.url)
    # "refused": its first attempt gets 503, its retry comes due during the outage.
    # "in flight": its first attempt is answered 200 only after the outage has begun, so the worker
    # cannot record the outcome and the job must be delivered again from its expired lease.
    receiver.reply(Reply(status=503), Reply(delay=1.5))
    async with running(settings):
        refused = queued_id(await attempt(settings.smtp_port, _mail("refused before"), RCPT))
        await receiver.wait_for(1)
        in_flight = queued_id(await attempt(settings.smtp_port, _mail("in flight"), RCPT))
        await _claimed(engine, in_flight)  # its POST is on its way: the receiver holds it 1.5 s

        async with database_refusing_connections(database_url):
            during = await attempt(settings.smtp_port, _mail("during the outage"), RCPT)
            await asyncio.sleep(3.5)  # the 503'd retry comes due and the slow 200 arrives, both meanwhile

        after = queued_id(await attempt(settings.smtp_port, _mail("after the outage"), RCPT))
        logs = await _delivered(client, alice, webhook["id"], 3)

    assert final(during)[1] == 451, during
    assert {log["smtp_message_id"] for log in logs} == {refused, in_flight, after}
    assert len(logs) == 3  # each logged delivered once, though "in flight" reached the receiver twice
    payloads = [verify_signature(webhook["secret"], r) for r in receiver.received]
    assert sorted(p["subject"] for p in payloads) == [
        "after the outage", "in flight", "in flight", "refused before", "refused before"]


async def _claimed(engine, message_id: str) -> None:
    """Wait until the worker has taken the message's delivery job (an attempt is counted)."""
    query = text("SELECT attempts FROM delivery_jobs WHERE message_id = :id")

    async def taken() -> bool:
        async with engine.connect() as connection:
            return (await connection.scalar(query, {"id": message_id})) == 1
    await _eventually(taken)
