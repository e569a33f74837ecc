"""The SMTP server's route cache, seen from a sending server: a change made through the API (in the
server's process, sharing its engine as in `conduit serve`) is seen by the very next message; a
change written past Conduit's ORM sessions is seen within CONDUIT_ROUTE_CACHE_SECONDS; an address
nobody had is taken as soon as it is created.

"Past Conduit's ORM sessions" is a plain connection of the test's own. Changes by other Conduit
processes (a worker of `conduit serve`, another node) are in tests/e2e/test_route_changes.py."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from conduit.clock import new_id, now
from conduit.smtp import replies
from conduit.storage.models import DeliveryJob, DeliveryLog, Message, Webhook
from tests.factories import (
    PASSWORD,
    create_policy,
    create_webhook,
    execute,
    verified_domain,
)
from tests.support.conversation import _eventually, _in_smtp_session, _mail
from tests.support.pipeline import free_port, running
from tests.support.receiver import Reply

PUBLIC = "in.example"
ACCEPTED = 250


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, dns_zone) -> dict:
    """A cache entry lives an hour unless a test says otherwise: what is seen at once is seen
    because the cache was cleared, not because the entry expired."""
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "dns_servers": f"127.0.0.1:{dns_zone.port}",
            "route_cache_seconds": 3600, **getattr(request, "param", {})}


async def _send(settings, to: str) -> tuple[int, str]:
    """One message to ``to``: the RCPT reply if it refused, else the reply to the end of DATA."""
    def talk(smtp: smtplib.SMTP) -> tuple[int, str]:
        smtp.ehlo()
        smtp.mail("ann@sender.example")
        code, text = smtp.rcpt(to)
        if code == ACCEPTED:
            code, text = smtp.data(_mail(to).as_bytes())
        else:
            smtp.rset()
        return code, f"{code} {text.decode()}"
    return await _in_smtp_session(settings, talk, helo="mta.sender.example")


async def _put(client, owner, path: str, body: dict) -> None:
    response = await client.put(path, json=body, headers=owner.headers)
    assert response.status_code == 200, response.text


async def _delete(client, owner, path: str) -> None:
    response = await client.delete(path, headers=owner.headers)
    assert response.status_code == 204, response.text


async def test_pausing_and_deleting_a_webhook_is_seen_by_the_next_message(settings, engine, database, client, alice):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await _put(client, alice, f"/webhooks/{hook['id']}", {"active": False})
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)
        await _put(client, alice, f"/webhooks/{hook['id']}", {"active": True})
        assert (await _send(settings, f"box+tag@{PUBLIC}"))[0] == ACCEPTED
        await _delete(client, alice, f"/webhooks/{hook['id']}")
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)
        assert (await _send(settings, f"box+tag@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)


async def test_a_new_address_is_preferred_at_once_to_the_one_that_took_its_mail(settings, engine,
                                                                                database, client, alice, dns_zone):
    await verified_domain(client, alice, dns_zone, "owned.example")
    await create_webhook(client, alice, "*@owned.example", "http://127.0.0.1:9/", name="catch-all")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, "sales@owned.example"))[0] == ACCEPTED  # by the catch-all
        sales = await create_webhook(client, alice, "sales@owned.example", "http://127.0.0.1:9/")
        await _put(client, alice, f"/webhooks/{sales['id']}", {"active": False})
        assert (await _send(settings, "sales@owned.example"))[1] == str(replies.INACTIVE_RECIPIENT)


async def test_changing_the_policy_of_a_webhook_is_seen_by_the_next_message(settings, engine, database, client, alice):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    policy = await create_policy(client, alice, allowed_source_ips="192.0.2.1")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await _put(client, alice, f"/webhooks/{hook['id']}", {"smtp_security_policy_id": policy["id"]})
        assert (await _send(settings, f"box@{PUBLIC}"))[1].startswith("550 5.7.1")
        await _put(client, alice, f"/smtp-policies/{policy['id']}", {"allowed_source_ips": "127.0.0.1"})
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await _put(client, alice, f"/smtp-policies/{policy['id']}", {"allowed_source_ips": "192.0.2.0/24"})
        assert (await _send(settings, f"box@{PUBLIC}"))[1].startswith("550 5.7.1")
        await _delete(client, alice, f"/smtp-policies/{policy['id']}")  # the webhook is left without one
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED


async def test_deleting_the_domain_or_the_account_is_seen_by_the_next_message(settings, engine,
                                                                              database, client, alice, dns_zone):
    await verified_domain(client, alice, dns_zone, "owned.example")
    await create_webhook(client, alice, "box@owned.example", "http://127.0.0.1:9/")
    await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    domain = next(d for d in (await client.get("/domains", headers=alice.headers)).json()
                  if d["name"] == "owned.example")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, "box@owned.example"))[0] == ACCEPTED
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await _delete(client, alice, f"/domains/{domain['id']}")
        assert (await _send(settings, "box@owned.example"))[1] == str(replies.UNKNOWN_RECIPIENT)
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        response = await client.request("DELETE", "/accounts/me", headers=alice.headers,
                                        json={"password": PASSWORD, "confirm": True})
        assert response.status_code == 204, response.text
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)


async def _copy_webhook(engine: AsyncEngine, webhook_id: str, address: str) -> None:
    """Another process creates a webhook at ``address`` (like the given one otherwise)."""
    async with engine.begin() as connection:
        row = (await connection.execute(select(Webhook.__table__).where(Webhook.id == webhook_id))).mappings().one()
        await connection.execute(insert(Webhook.__table__).values({**row, "id": new_id("whk"), "address": address}))


async def test_an_address_created_by_another_process_takes_mail_at_once(settings, engine, database, client, alice):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"sales@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)
        await _copy_webhook(engine, hook["id"], f"sales@{PUBLIC}")
        assert (await _send(settings, f"sales@{PUBLIC}"))[0] == ACCEPTED


@pytest.mark.parametrize("settings_overrides", [{"route_cache_seconds": 0.5}], indirect=True)
async def test_a_change_by_another_process_is_seen_once_the_entry_expires(settings, engine, database, client, alice):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await execute(engine, update(Webhook).where(Webhook.id == hook["id"]).values(active=False))

        async def refused() -> bool:
            return (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)

        await _eventually(refused)


@pytest.mark.parametrize("settings_overrides", [{"route_cache_seconds": 0}], indirect=True)
async def test_without_the_cache_a_change_by_another_process_is_seen_at_once(settings, engine, database, client, alice):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await execute(engine, update(Webhook).where(Webhook.id == hook["id"]).values(active=False))
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)


async def test_mail_for_a_webhook_another_process_deleted_is_deferred_then_refused(settings, engine,
                                                                                   database, client, alice):
    """Within the cache's lifetime the route still names the webhook, but its delivery job cannot
    be stored (foreign key): 451, and the sender tries again; once the entry is gone, 550."""
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://127.0.0.1:9/")
    async with running(settings, frozenset({"smtp"}), database):
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED
        await execute(engine, delete(Webhook).where(Webhook.id == hook["id"]))
        assert await _send(settings, f"box@{PUBLIC}") == (451, str(replies.TEMPORARY_FAILURE))
    async with engine.connect() as connection:  # the deferred message was not stored, not even in part
        assert len((await connection.execute(select(Message.id))).all()) == 1
        assert (await connection.execute(select(DeliveryJob.id))).all() == []  # the first one's went with the webhook
    async with running(settings, frozenset({"smtp"}), database):  # as when the entry expires: a fresh cache
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.UNKNOWN_RECIPIENT)


@pytest.mark.parametrize("settings_overrides", [{"retry_schedule": "0", "deactivate_after_days": 5}], indirect=True)
async def test_a_webhook_the_worker_deactivates_refuses_the_next_message(settings, database, client, alice, receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with database.transaction() as db:  # it has failed since six days ago
        db.add(DeliveryLog(id=new_id("log"), webhook_id=hook["id"], status="failed",
                           attempted_at=now() - timedelta(days=6), http_status=500))
    receiver.default = Reply(status=500)
    async with running(settings):  # the worker in the SMTP server's process, as `conduit serve` on one core
        assert (await _send(settings, f"box@{PUBLIC}"))[0] == ACCEPTED

        async def deactivated() -> bool:
            return not (await client.get(f"/webhooks/{hook['id']}", headers=alice.headers)).json()["active"]

        await _eventually(deactivated)
        assert (await _send(settings, f"box@{PUBLIC}"))[1] == str(replies.INACTIVE_RECIPIENT)
