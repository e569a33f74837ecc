"""Database unavailable while mail arrives (PostgreSQL): the SMTP server answers 451 4.3.0, never
250; once the database takes connections again, new mail is accepted and delivered.

The outage is real: the database is switched to ALLOW_CONNECTIONS false and every session on it
is terminated, from an admin connection to the `postgres` database."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.factories import create_webhook
from tests.support.pipeline import free_port, running
from tests.support.receiver import verify_signature

PUBLIC = "in.example"


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


async def _attempt(settings, message: EmailMessage) -> list[tuple[str, int, str]]:
    """One SMTP transaction, step by step: every (command, code, text) the server answered."""
    def talk() -> list[tuple[str, int, str]]:
        replies: list[tuple[str, int, str]] = []
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.example")
            code, text = smtp.mail("ann@sender.example")
            replies.append(("MAIL", code, text.decode()))
            if code != 250:
                return replies
            code, text = smtp.rcpt(f"box@{PUBLIC}")
            replies.append(("RCPT", code, text.decode()))
            if code not in (250, 251):
                return replies
            try:
                code, text = smtp.data(message.as_bytes())
            except smtplib.SMTPDataError as exc:
                code, text = exc.smtp_code, exc.smtp_error
            replies.append(("DATA", code, text.decode()))
        return replies
    return await asyncio.to_thread(talk)


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


def _final(replies: list[tuple[str, int, str]]) -> tuple[str, int, str]:
    return replies[-1]


async def test_mail_during_a_database_outage_gets_451_and_mail_after_it_is_delivered(
        settings, database_url, client, alice, receiver):
    webhook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        before = await _attempt(settings, _mail("before the outage"))
        assert _final(before)[:2] == ("DATA", 250), before
        await _delivered(client, alice, webhook["id"], 1)  # recorded, not just sent: nothing in flight

        async with database_refusing_connections(database_url):
            during = [await _attempt(settings, _mail(f"during the outage {i}")) for i in range(3)]

        after = await _attempt(settings, _mail("after the outage"))
        requests = await receiver.wait_for(2, timeout=20)
        logs = await _delivered(client, alice, webhook["id"], 2)

    for replies in during:
        command, code, text = _final(replies)
        assert command in ("RCPT", "DATA"), replies
        assert (code, text.split(" ", 1)[0]) == (451, "4.3.0"), replies
        assert all(c != 250 for step, c, _ in replies if step in ("RCPT", "DATA")), replies
    assert _final(after)[:2] == ("DATA", 250), after
    subjects = [verify_signature(webhook["secret"], r)["subject"] for r in requests]
    assert subjects == ["before the outage", "after the outage"]
    assert len(logs) == 2
