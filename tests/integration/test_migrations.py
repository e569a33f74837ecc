"""The schema migration 0005_fair_queue against a database at the previous head, on a real SQLite
file and a real PostgreSQL database of its own: jobs queued before it keep their recipient (as
their one routed recipient) and are claimed and delivered as usual; it downgrades and upgrades
again cleanly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from conduit.config import load_settings
from conduit.storage.database import open_database
from conduit.storage.migrate import alembic_config
from tests.conftest import BACKENDS, POSTGRES_URL, TEST_SECRET_KEY, postgres_admin

PREVIOUS = "0004_account_disabled"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema: a new SQLite file, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'conduit.db'}"
        return
    name = f"conduit_migration_{os.getpid()}"
    postgres_admin(f"DROP DATABASE IF EXISTS {name}")
    postgres_admin(f"CREATE DATABASE {name}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    postgres_admin(f"DROP DATABASE {name} WITH (FORCE)")


def _alembic(url: str, verb: str, revision: str) -> None:
    """Alembic runs its own event loop: a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(getattr(command, verb), alembic_config(url), revision).result()


def _queue_a_job_at_the_previous_head(url: str) -> None:
    """An account, a domain, a webhook, a message and its queued job, as 0004 stores them."""
    rows = [
        ("INSERT INTO accounts (id, email, password_hash, timezone, token_generation, totp_enabled, totp_last_step,"
         " created_at, updated_at) VALUES ('acc_1', 'a@example.com', 'x', 'UTC', 0, false, 0, :at, :at)"),
        ("INSERT INTO domains (id, name, verification_token, verified, is_public, created_at, updated_at)"
         " VALUES ('dom_1', 'in.example', 't', true, true, :at, :at)"),
        ("INSERT INTO webhooks (id, account_id, domain_id, name, address, target_url, secret_encrypted,"
         " custom_headers, rate_limit, active, created_at, updated_at) VALUES ('whk_1', 'acc_1', 'dom_1', 'w',"
         " 'box@in.example', 'http://127.0.0.1:9/hook', 's', '{}', 0, true, :at, :at)"),
        ("INSERT INTO messages (id, received_at, mail_from, rcpt_to, remote_ip, helo, tls, size, auth_results, raw)"
         " VALUES ('msg_1', :at, 'ann@example.org', '[\"box@in.example\", \"other@in.example\"]', '192.0.2.1',"
         " 'h', false, 3, '{}', :raw)"),
        ("INSERT INTO delivery_jobs (id, message_id, webhook_id, rcpt_to, status, attempts, next_attempt_at,"
         " created_at, last_error) VALUES ('job_1', 'msg_1', 'whk_1', 'box@in.example', 'queued', 0, :at, :at, '')"),
    ]
    at = AT.replace(tzinfo=None).isoformat(" ") if url.startswith("sqlite") else AT

    async def insert() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                for statement in rows:
                    await connection.execute(text(statement), {"at": at, "raw": b"x\r\n"})
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, insert()).result()


async def test_jobs_queued_before_the_upgrade_keep_their_recipient_and_are_claimed(empty_url):
    _alembic(empty_url, "upgrade", PREVIOUS)
    _queue_a_job_at_the_previous_head(empty_url)

    _alembic(empty_url, "upgrade", "head")

    database = open_database(load_settings(database_url=empty_url, secret_key=TEST_SECRET_KEY))
    try:
        ((job, message, webhook),) = await database.run(database.queue.claim, limit=10,
                                                        lease=timedelta(seconds=30), per_webhook=16)
        assert (job.id, job.rcpt_to, job.recipients, job.attempts) == ("job_1", "box@in.example",
                                                                        ["box@in.example"], 1)
        assert message.rcpt_to == ["box@in.example", "other@in.example"]
        assert webhook.address == "box@in.example"
        assert await database.run(database.queue.finish_held, [job], status="delivered",
                                  keep_raw=False) == {"job_1"}
    finally:
        await database.dispose()


async def test_the_upgrade_downgrades_and_upgrades_again(empty_url):
    _alembic(empty_url, "upgrade", "head")
    _alembic(empty_url, "downgrade", PREVIOUS)
    _queue_a_job_at_the_previous_head(empty_url)  # the 0004 schema again, as it was

    _alembic(empty_url, "upgrade", "head")

    database = open_database(load_settings(database_url=empty_url, secret_key=TEST_SECRET_KEY))
    try:
        claimed = await database.run(database.queue.claim, limit=10, lease=timedelta(seconds=30), per_webhook=16)
        assert [job.recipients for job, _, _ in claimed] == [["box@in.example"]]
    finally:
        await database.dispose()
