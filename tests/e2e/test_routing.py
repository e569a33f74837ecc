"""Routing and limits over real SMTP: catch-all on an owned domain, custom headers, the cap on
concurrent sessions, and deactivation of a webhook that has only failed for days."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import timedelta

import pytest

from conduit.clock import new_id, now
from conduit.storage.models import DeliveryLog
from tests.factories import create_webhook, verified_domain
from tests.support.conversation import (
    _eventually,
    _in_smtp_session,
    _logs,
    _mail,
    _send,
)
from tests.support.pipeline import free_port, running
from tests.support.receiver import Reply, verify_signature


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"smtp_port": free_port(), "dns_servers": f"127.0.0.1:{dns_zone.port}", "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3", "smtp_max_sessions": 2,
            "deactivate_after_days": 5}


async def test_catch_all_takes_what_no_exact_address_takes(settings, client, alice, dns_zone, receiver):
    await verified_domain(client, alice, dns_zone, "owned.example")
    catch_all = await create_webhook(client, alice, "*@owned.example", receiver.url)
    exact = await create_webhook(client, alice, "sales@owned.example", receiver.url)
    async with running(settings):
        await _send(settings, _mail("anything@owned.example", subject="to catch-all"))
        await _send(settings, _mail("sales@owned.example", subject="to sales"))
        first, second = await receiver.wait_for(2)
    by_subject = {r.json()["subject"]: r for r in (first, second)}
    assert verify_signature(catch_all["secret"], by_subject["to catch-all"])["webhook"]["id"] == catch_all["id"]
    assert verify_signature(exact["secret"], by_subject["to sales"])["webhook"]["id"] == exact["id"]


async def test_custom_headers_are_sent_with_each_delivery(settings, client, alice, dns_zone, receiver):
    await verified_domain(client, alice, dns_zone, "owned.example")
    await create_webhook(client, alice, "box@owned.example", receiver.url,
                         custom_headers={"X-Api-Key": "k-123", "X-Tenant": "acme"})
    async with running(settings):
        await _send(settings, _mail("box@owned.example"))
        (request,) = await receiver.wait_for(1)
    assert (request.headers["X-Api-Key"], request.headers["X-Tenant"]) == ("k-123", "acme")


async def test_sessions_beyond_the_cap_get_421(settings):
    async with running(settings):
        first = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", settings.smtp_port)
        second = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", settings.smtp_port)
        try:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", settings.smtp_port)
            assert refused.value.smtp_code == 421
        finally:
            await asyncio.to_thread(first.quit)
            await asyncio.to_thread(second.quit)
        # A slot is free again once a session ends.
        assert await _in_smtp_session(settings, lambda smtp: smtp.noop()[0]) == 250


async def test_webhook_failing_for_days_is_deactivated(settings, database, client, alice, dns_zone, receiver):
    await verified_domain(client, alice, dns_zone, "owned.example")
    hook = await create_webhook(client, alice, "box@owned.example", receiver.url)
    async with database.transaction() as db:  # it has failed since six days ago
        db.add(DeliveryLog(id=new_id("log"), webhook_id=hook["id"], status="failed",
                           attempted_at=now() - timedelta(days=6), http_status=500))
    receiver.default = Reply(status=500)
    async with running(settings):
        await _send(settings, _mail("box@owned.example"))
        await receiver.wait_for(1)

        async def deactivated() -> bool:
            return not (await client.get(f"/webhooks/{hook['id']}", headers=alice.headers)).json()["active"]

        await _eventually(deactivated)
    audit = (await client.get("/accounts/me/audit-log", headers=alice.headers)).json()
    entry = next(e for e in audit if e["action"] == "webhook.deactivated")
    assert "5 days" in entry["metadata"]["reason"]


async def test_a_recent_success_keeps_a_failing_webhook_active(settings, database, client, alice, dns_zone, receiver):
    await verified_domain(client, alice, dns_zone, "owned.example")
    hook = await create_webhook(client, alice, "box@owned.example", receiver.url)
    async with database.transaction() as db:
        db.add(DeliveryLog(id=new_id("log"), webhook_id=hook["id"], status="failed",
                           attempted_at=now() - timedelta(days=6), http_status=500))
        db.add(DeliveryLog(id=new_id("log"), webhook_id=hook["id"], status="delivered",
                           attempted_at=now() - timedelta(days=1), http_status=200))
    receiver.default = Reply(status=500)
    async with running(settings):
        await _send(settings, _mail("box@owned.example"))
        await receiver.wait_for(2)  # both attempts of the schedule

        async def gave_up() -> bool:  # the old failure plus this delivery's final one
            return len(await _logs(client, alice, hook["id"], status="failed")) == 2

        await _eventually(gave_up)
    assert (await client.get(f"/webhooks/{hook['id']}", headers=alice.headers)).json()["active"] is True
