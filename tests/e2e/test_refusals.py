"""Refused mail is recorded for the account it was meant for, over real SMTP conversations with
Conduit's SMTP server (conduit.runtime.run) on a real database: each kind of refusal with the
reply the sender got, the cap per account and hour with what it dropped, the account scope of
the query, and a failing write that leaves the SMTP reply as it was."""

from __future__ import annotations

import logging
import smtplib

import pytest
from sqlalchemy import text

from conduit.errors import Invalid
from conduit.storage import refusals
from tests.factories import create_policy, create_webhook, execute, user, verified_domain
from tests.support.conversation import _eventually, _in_smtp_session, _mail, _send
from tests.support.pipeline import free_port, running

OWNED = "owned.example"
PUBLIC = "in.example"
SENDER = "ann@sender.example"


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"smtp_port": free_port(), "dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC,
            "allow_private_targets": True, "inbound_auth_checks": False, "smtp_max_message_bytes": 50_000,
            "smtp_max_recipients": 2, "refusals_per_hour": 50}


async def _refusals(database, account_id: str, count: int, **filters) -> list:
    """The account's refusals once ``count`` of them are recorded (they are written in the background)."""
    async def probe():
        async with database.sessions() as db:
            page = await refusals.list_refusals(db, account_id, **filters)
        return page.items if len(page.items) >= count else None
    return await _eventually(probe)


async def test_each_kind_of_refusal_is_recorded_with_its_reply(settings, client, alice, dns_zone, database,
                                                               receiver):
    await verified_domain(client, alice, dns_zone, OWNED)
    await create_webhook(client, alice, f"box@{OWNED}", receiver.url)
    await create_webhook(client, alice, f"off@{OWNED}", receiver.url, active=False)
    strict = await create_policy(client, alice, allowed_source_ips="192.0.2.1")
    await create_webhook(client, alice, f"strict@{OWNED}", receiver.url, smtp_security_policy_id=strict["id"])

    def talk(smtp: smtplib.SMTP) -> dict[str, tuple[int, str]]:
        smtp.ehlo()
        smtp.mail(SENDER)
        answers = {"unknown_recipient": smtp.rcpt(f"nobody@{OWNED}"), "inactive_webhook": smtp.rcpt(f"off@{OWNED}"),
                   "policy": smtp.rcpt(f"strict@{OWNED}")}
        assert smtp.rcpt(f"box@{OWNED}")[0] == 250
        assert smtp.rcpt(f"box+a@{OWNED}")[0] == 250
        answers["too_many_recipients"] = smtp.rcpt(f"box+b@{OWNED}")
        smtp.rset()
        smtp.mail(SENDER)
        assert smtp.rcpt(f"box@{OWNED}")[0] == 250
        answers["too_big"] = smtp.data(b"Subject: big\r\n\r\n" + b"secret body line\r\n" * 5000)
        return {kind: (code, message.decode()) for kind, (code, message) in answers.items()}

    async with running(settings):
        answers = await _in_smtp_session(settings, talk)
        found = await _refusals(database, alice.id, 5)
    assert {kind: code for kind, (code, _) in answers.items()} == {
        "unknown_recipient": 550, "inactive_webhook": 550, "policy": 550, "too_many_recipients": 452, "too_big": 552}
    by_reason = {r.reason: r for r in found}
    assert set(by_reason) == set(answers)
    for reason, (code, message) in answers.items():
        refusal = by_reason[reason]
        assert (refusal.reply_code, refusal.reply_text) == (code, message), reason
        assert (refusal.sender, refusal.client_ip, refusal.account_id) == (SENDER, "127.0.0.1", alice.id)
    assert by_reason["unknown_recipient"].recipient == f"nobody@{OWNED}"
    assert by_reason["too_many_recipients"].recipient == f"box+b@{OWNED}"
    assert by_reason["too_big"].recipient == f"box@{OWNED}"
    assert "127.0.0.1" in by_reason["policy"].detail  # the failed check's why
    assert all("secret body" not in str(vars(r)) for r in found)
    assert receiver.received == []


async def test_a_flood_is_capped_per_account_and_the_rest_counted(settings, client, alice, dns_zone, database):
    await verified_domain(client, alice, dns_zone, OWNED)
    capped = settings.model_copy(update={"refusals_per_hour": 5})

    def talk(smtp: smtplib.SMTP) -> list[int]:
        smtp.ehlo()
        smtp.mail(SENDER)
        return [smtp.rcpt(f"guess{n}@{OWNED}")[0] for n in range(40)]

    async with running(capped):
        assert await _in_smtp_session(capped, talk) == [550] * 40

        async def all_counted():
            async with database.sessions() as db:
                page = await refusals.list_refusals(db, alice.id, limit=200)
                lost = await refusals.dropped(db, alice.id)
            return (len(page.items), lost) if len(page.items) + lost == 40 else None
        assert await _eventually(all_counted) == (5, 35)


async def test_refusals_are_seen_only_by_their_account(settings, client, alice, dns_zone, database, receiver):
    bob = await user(client)
    await verified_domain(client, alice, dns_zone, OWNED)
    await verified_domain(client, bob, dns_zone, "bob.example")
    await create_webhook(client, bob, f"box@{PUBLIC}", receiver.url, active=False)

    def talk(smtp: smtplib.SMTP) -> None:
        smtp.ehlo()
        smtp.mail(SENDER)
        assert smtp.rcpt(f"nobody@{OWNED}")[0] == 550
        assert smtp.rcpt("nobody@bob.example")[0] == 550
        assert smtp.rcpt(f"box@{PUBLIC}")[0] == 550  # bob's paused address on the operator's domain
        assert smtp.rcpt(f"stranger@{PUBLIC}")[0] == 550  # nobody's: recorded for no account

    async with running(settings):
        await _in_smtp_session(settings, talk)
        alices = await _refusals(database, alice.id, 1)
        bobs = await _refusals(database, bob.id, 2)
    assert [r.recipient for r in alices] == [f"nobody@{OWNED}"]
    assert sorted(r.recipient for r in bobs) == [f"box@{PUBLIC}", "nobody@bob.example"]
    async with database.sessions() as db:
        only_bobs = await refusals.list_refusals(db, bob.id, recipient=f"nobody@{OWNED}")
        first = await refusals.list_refusals(db, bob.id, limit=1)
        second = await refusals.list_refusals(db, bob.id, limit=1, cursor=first.next_cursor)
        assert (await refusals.list_refusals(db, bob.id, sender="someone@else.example")).items == []
    assert only_bobs.items == []
    assert [first.items[0].id, second.items[0].id] == [r.id for r in bobs]  # newest first, paged
    assert second.next_cursor is None


async def test_a_bad_cursor_is_a_clear_error(database, alice):
    async with database.sessions() as db:
        with pytest.raises(Invalid) as bad:
            await refusals.list_refusals(db, alice.id, cursor="not-a-cursor")
    assert bad.value.field == "cursor"


async def test_a_failing_record_leaves_the_reply_as_it_was(settings, client, alice, dns_zone, database, engine,
                                                           receiver, caplog):
    await verified_domain(client, alice, dns_zone, OWNED)
    await create_webhook(client, alice, f"box@{OWNED}", receiver.url)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        await execute(engine, text("CREATE FUNCTION refuse_refusals() RETURNS trigger LANGUAGE plpgsql AS "
                                   "$$ BEGIN RAISE EXCEPTION 'refusals are broken'; END $$"))
        await execute(engine, text("CREATE TRIGGER broken BEFORE INSERT ON refusals "
                                   "FOR EACH ROW EXECUTE FUNCTION refuse_refusals()"))
    else:
        await execute(engine, text("CREATE TRIGGER broken BEFORE INSERT ON refusals "
                                   "BEGIN SELECT RAISE(ABORT, 'refusals are broken'); END"))
    caplog.set_level(logging.ERROR, logger="conduit.smtp")
    try:
        def talk(smtp: smtplib.SMTP) -> tuple[int, bytes]:
            smtp.ehlo()
            smtp.mail(SENDER)
            return smtp.rcpt(f"nobody@{OWNED}")

        async with running(settings):
            assert await _in_smtp_session(settings, talk) == (550, b"5.1.1 No such recipient here")
            refused, reply = await _send(settings, _mail(f"box@{OWNED}"))
            assert refused == {} and "queued as msg_" in reply
            await receiver.wait_for(1)
            await _eventually(lambda: _logged(caplog, "event=refusal_not_recorded"))
    finally:
        await execute(engine, text("DROP TRIGGER broken ON refusals" if postgres else "DROP TRIGGER broken"))
        if postgres:
            await execute(engine, text("DROP FUNCTION refuse_refusals()"))


async def _logged(caplog, event: str) -> bool:
    return any(event in record.getMessage() for record in caplog.records)


async def test_the_messages_api_lists_refusals_with_their_reply(settings, client, alice, dns_zone, database, receiver):
    await verified_domain(client, alice, dns_zone, OWNED)
    box = await create_webhook(client, alice, f"box@{OWNED}", receiver.url)
    await create_webhook(client, alice, f"off@{OWNED}", receiver.url, active=False)
    bob = await user(client)

    def talk(smtp: smtplib.SMTP) -> list[tuple[int, str]]:
        smtp.ehlo()
        smtp.mail(SENDER)
        answers = [smtp.rcpt(f"nobody@{OWNED}"), smtp.rcpt(f"off@{OWNED}")]
        assert smtp.rcpt(f"box@{OWNED}")[0] == 250
        assert smtp.data(b"Subject: kept\r\n\r\nhello\r\n")[0] == 250
        return [(code, message.decode()) for code, message in answers]

    async with running(settings):
        (unknown, inactive) = await _in_smtp_session(settings, talk)
        await _refusals(database, alice.id, 2)

    async def listed(owner, **params) -> list[dict]:
        response = await client.get("/messages", params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        return response.json()

    refused = await listed(alice, status="refused")
    assert [(m["status"], m["rcpt_to"], m["refusal_reason"]) for m in refused] == [
        ("refused", [f"off@{OWNED}"], "inactive_webhook"), ("refused", [f"nobody@{OWNED}"], "unknown_recipient")]
    assert refused[1]["refusal_reply"] == f"{unknown[0]} {unknown[1]}"
    assert refused[0]["refusal_reply"] == f"{inactive[0]} {inactive[1]}" and inactive[0] == 550
    assert refused[0]["mail_from"] == SENDER and refused[0]["size"] == 0 and refused[0]["subject"] == ""
    # Without a status filter the list holds stored messages only: the one accepted.
    assert [m["status"] for m in await listed(alice)] != [] and all(
        m["status"] != "refused" for m in await listed(alice))
    assert [m["rcpt_to"] for m in await listed(alice, status="refused", recipient=f"NOBODY@{OWNED}")] == [
        [f"nobody@{OWNED}"]]
    assert await listed(alice, status="refused", sender="else@sender.example") == []
    assert await listed(alice, status="refused", subject="kept") == []  # a refusal keeps no Subject
    assert await listed(alice, status="refused", webhook_id=box["id"]) == []
    first = await client.get("/messages", params={"status": "refused", "limit": 1}, headers=alice.headers)
    cursor = first.headers["X-Next-Cursor"]
    second = await listed(alice, status="refused", limit=1, cursor=cursor)
    assert [first.json()[0]["id"], second[0]["id"]] == [m["id"] for m in refused]
    assert await listed(bob, status="refused") == []
    opened = await client.get(f"/messages/{refused[0]['id']}", headers=alice.headers)
    assert opened.status_code == 404 and opened.json()["code"] == "message_not_found"
