"""``Database.run`` (conduit/storage/database.py), the hot paths' transaction boundary, against the
real database: it commits or rolls back whole, its writers from several Databases (as from several
processes) take turns without "database is locked", and only the worker's commits skip the
wait for the disk; the SMTP server's (the 250) never do."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.storage.database import open_database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.models import AuditEntry
from tests.factories import sign_up

_ENTRIES = AuditEntry.__table__


def _add_entries(session: Session, account_id: str, count: int, *, fail: bool = False) -> None:
    session.connection().execute(insert(_ENTRIES), [
        {"id": new_id("aud"), "account_id": account_id, "action": "test.entry", "ip": "",
         "details": {}, "created_at": now()} for i in range(count)])
    if fail:
        raise RuntimeError("the caller's function failed")


async def _entries(sessions, account_id: str) -> int:
    async with sessions() as db:
        return await db.scalar(select(func.count()).select_from(_ENTRIES).where(
            _ENTRIES.c.account_id == account_id, _ENTRIES.c.action == "test.entry"))


def _commit_mode(session: Session) -> str:
    """What this transaction's commit waits for, as the database reports it."""
    if session.bind.dialect.name == "postgresql":
        return "disk" if session.execute(text("SHOW synchronous_commit")).scalar() == "on" else "no wait"
    return "disk" if session.execute(text("PRAGMA synchronous")).scalar() == 2 else "no wait"  # 2: FULL


@pytest.fixture
async def account_id(client) -> str:
    return (await sign_up(client))["id"]


async def test_a_transaction_commits_whole_or_not_at_all(database, account_id):
    await database.run(_add_entries, account_id, 3)
    with pytest.raises(RuntimeError, match="the caller's function failed"):
        await database.run(_add_entries, account_id, 5, fail=True)
    assert await _entries(database.sessions, account_id) == 3


async def test_writers_on_several_databases_take_turns_without_lock_errors(settings, database, account_id):
    """Three Databases on one database, as three processes would have, 40 transactions each at once."""
    databases = [database, open_database(settings), open_database(settings)]
    try:
        writes = [d.run(_add_entries, account_id, 1 + n % 3, durable=n % 2 == 0) for n in range(40) for d in databases]
        await asyncio.gather(*writes)
    finally:
        for other in databases[1:]:
            await other.dispose()
    assert await _entries(database.sessions, account_id) == 3 * sum(1 + n % 3 for n in range(40))


async def test_only_durable_false_commits_skip_the_wait_for_the_disk(database):
    assert await database.run(_commit_mode) == "disk"
    assert await database.run(_commit_mode, durable=False) == "no wait"
    assert await database.run(_commit_mode) == "disk"  # not left behind on the connection


async def test_a_database_with_lazy_commits_waits_for_the_disk_only_when_asked(settings):
    """A process that takes no mail (conduit worker) commits lazily by default, on PostgreSQL
    without a SET LOCAL per transaction; a durable transaction there still waits for the disk."""
    database = open_database(settings, lazy_commits=True)
    try:
        expected = "no wait" if database.dialect == "postgresql" else "disk"  # SQLite: its sync engines decide
        assert await database.run(_commit_mode, durable=False) == "no wait"
        assert await database.run(_commit_mode) == "disk"
        assert await database.run(_commit_mode, durable=False) == "no wait"
        async with database.sessions() as db:
            assert await db.run_sync(_commit_mode) == expected
    finally:
        await database.dispose()


async def test_the_smtp_group_commit_waits_for_the_disk_and_the_workers_does_not(database):
    seen: list[str] = []

    def write_batch(session: Session, items: list[int]) -> None:
        seen.extend(_commit_mode(session) for _ in items)

    await GroupCommit(database, write_batch).write(1)  # as the SMTP server's (conduit/runtime.py)
    await GroupCommit(database, write_batch, durable=False).write(2)  # as the worker's recorder
    assert seen == ["disk", "no wait"]
