"""The refusals store on a real database: the hourly cap counts per window, housekeeping expires
old refusals with their counts, and the query filters and pages within one account."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from conduit.clock import now
from conduit.services.maintenance import purge_expired
from conduit.storage import refusals
from conduit.storage.models import RefusalWindow
from conduit.storage.refusals import RefusalRecord, record_batch
from tests.factories import user


def _refusal(account_id: str, *, ago: timedelta = timedelta(0), recipient: str = "box@owned.example",
             sender: str = "ann@sender.example") -> RefusalRecord:
    return RefusalRecord(reason="unknown_recipient", reply_code=550, reply_text="5.1.1 No such recipient here",
                         sender=sender, recipient=recipient, client_ip="192.0.2.7", account_id=account_id,
                         refused_at=now() - ago)


async def _all(database, account_id: str, **filters) -> list:
    async with database.sessions() as db:
        return (await refusals.list_refusals(db, account_id, limit=200, **filters)).items


async def test_each_hour_has_its_own_cap_and_counts_what_it_dropped(client, database):
    alice = await user(client)
    last_hour = [_refusal(alice.id, ago=timedelta(hours=1)) for _ in range(4)]
    this_hour = [_refusal(alice.id) for _ in range(4)]
    await database.run(record_batch, last_hour, cap=3)
    await database.run(record_batch, this_hour[:2], cap=3)
    await database.run(record_batch, this_hour[2:], cap=3)
    assert len(await _all(database, alice.id)) == 6
    async with database.sessions() as db:
        assert await refusals.dropped(db, alice.id) == 2
        assert await refusals.dropped(db, alice.id, since=now()) == 1


async def test_housekeeping_expires_old_refusals_and_their_counts(client, database, settings):
    alice = await user(client)
    old = timedelta(days=settings.refusal_retention_days, hours=2)
    await database.run(record_batch, [_refusal(alice.id, ago=old), _refusal(alice.id)], cap=10)
    async with database.transaction() as session:
        await purge_expired(session, settings=settings)
    (kept,) = await _all(database, alice.id)
    assert kept.refused_at > now() - timedelta(minutes=5)
    async with database.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(RefusalWindow)) == 1


async def test_filters_and_pages_stay_within_the_account(client, database):
    alice, bob = await user(client), await user(client)
    await database.run(record_batch, [
        _refusal(alice.id, ago=timedelta(minutes=3), recipient="a@owned.example"),
        _refusal(alice.id, ago=timedelta(minutes=2), recipient="b@owned.example", sender="eve@spam.example"),
        _refusal(alice.id, ago=timedelta(minutes=1), recipient="A@owned.example"),
        _refusal(bob.id, recipient="a@owned.example")], cap=10)
    assert [r.recipient for r in await _all(database, alice.id)] == [
        "A@owned.example", "b@owned.example", "a@owned.example"]
    assert len(await _all(database, alice.id, recipient="a@OWNED.example")) == 2
    assert [r.recipient for r in await _all(database, alice.id, sender="eve@spam.example")] == ["b@owned.example"]
    assert [r.recipient for r in await _all(database, alice.id, after=now() - timedelta(seconds=150),
                                            before=now() - timedelta(seconds=90))] == ["b@owned.example"]
    seen, cursor = [], None
    async with database.sessions() as db:
        while True:
            page = await refusals.list_refusals(db, alice.id, cursor=cursor, limit=2)
            seen += [r.recipient for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == ["A@owned.example", "b@owned.example", "a@owned.example"]
    assert [r.account_id for r in await _all(database, bob.id)] == [bob.id]
