"""Delivery against the real `conduit serve` (real SMTP, real HTTP receivers): one hanging
receiver with a pile of mail delays only its own mail (CONDUIT_WEBHOOK_CONCURRENCY); an attempt
slower than its job's lease is POSTed once, not again by another claim (CONDUIT_DELIVERY_LEASE);
and each webhook's payload lists only the recipients routed to it, never another account's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from tests.support.conduit_process import PUBLIC, Conduit, Mailbox
from tests.support.conversation import _mail
from tests.support.receiver import Receiver, Reply

HOG_MESSAGES = 20


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    """Three receivers, stopped (hanging requests answered) before the Conduit that posts to them."""
    started = [Receiver() for _ in range(3)]
    for receiver in started:
        await receiver.start()
    yield started
    for receiver in started:
        await receiver.stop()


async def _serve(tmp_path, database_url: str, **env: str) -> Conduit:
    conduit = Conduit(tmp_path, database_url, **env)
    await conduit.start()
    return conduit


async def _statuses(mailbox: Mailbox) -> list[str]:
    """The webhook's log statuses once there is one (the attempt is recorded after the answer)."""
    for _ in range(100):
        if logs := await mailbox.logs():
            return [log["status"] for log in logs]
        await asyncio.sleep(0.1)
    return []


async def test_a_hanging_receiver_with_a_pile_of_mail_delays_only_its_own(tmp_path, database_url, receivers):
    hog, other, _ = receivers
    hog.default = Reply(hang=True)  # holds every request until the test ends
    # Eight deliveries in flight per worker, two per webhook; the hog's hang outlasts the test.
    conduit = await _serve(tmp_path, database_url, worker_concurrency="8", webhook_concurrency="2",
                           delivery_timeout="60", delivery_lease="10")
    try:
        hogged = await Mailbox.create(conduit, hog.url, email="hog@example.com", address=f"hog@{PUBLIC}")
        victim = await Mailbox.create(conduit, other.url, email="victim@example.com", address=f"box@{PUBLIC}")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=conduit.smtp_port) as smtp:
            for n in range(HOG_MESSAGES):
                await smtp.send_message(_mail(f"hog@{PUBLIC}", subject=f"pile {n}"))
        await hog.wait_for(2)

        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=conduit.smtp_port) as smtp:
            await smtp.send_message(_mail(f"box@{PUBLIC}", subject="for the victim"))
        (delivered,) = await other.wait_for(1, timeout=10)  # not after the hog's 60 s timeouts

        assert delivered.json()["subject"] == "for the victim"
        assert len(hog.received) == 2  # the hog holds its two slots, no more
        assert await _statuses(victim) == ["delivered"]  # recorded once the receiver has answered
        await hogged.aclose()
        await victim.aclose()
    finally:
        hog.default = Reply()
        await hog.stop()  # answers the hanging requests, so the worker can stop at once
        conduit.stop()


async def test_an_attempt_slower_than_the_lease_is_posted_once(tmp_path, database_url, receivers):
    slow, _, _ = receivers
    slow.default = Reply(delay=5)  # answers 200 after more than twice the lease
    conduit = await _serve(tmp_path, database_url, delivery_timeout="15", delivery_lease="2")
    try:
        mailbox = await Mailbox.create(conduit, slow.url)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=conduit.smtp_port) as smtp:
            await smtp.send_message(_mail(f"box@{PUBLIC}", subject="slow"))
        await slow.wait_for(1, timeout=30)
        for _ in range(100):
            if await mailbox.logs("delivered"):
                break
            await asyncio.sleep(0.1)
        # A second claim of the job would have POSTed it again by now (its request is recorded
        # when answered, 5 s after it arrived).
        await asyncio.sleep(5)

        assert len(slow.received) == 1
        assert [log["status"] for log in await mailbox.logs()] == ["delivered"]
        assert "lease_lost" not in conduit.log_text()
        await mailbox.aclose()
    finally:
        conduit.stop()


async def test_each_webhook_sees_only_the_recipients_routed_to_it(tmp_path, database_url, receivers):
    first, second, third = receivers
    conduit = await _serve(tmp_path, database_url)
    try:
        ann = await Mailbox.create(conduit, first.url, email="ann@example.com", address=f"ann@{PUBLIC}")
        response = await ann.api.post("/webhooks", headers=ann.headers,
                                      json={"address": f"sales@{PUBLIC}", "target_url": third.url})
        assert response.status_code == 201, response.text
        bob = await Mailbox.create(conduit, second.url, email="bob@example.com", address=f"bob@{PUBLIC}")
        recipients = [f"ann@{PUBLIC}", f"bob@{PUBLIC}", f"sales@{PUBLIC}", f"ann+news@{PUBLIC}"]

        await aiosmtplib.send(_mail(f"ann@{PUBLIC}", subject="to everyone"), hostname="127.0.0.1",
                              port=conduit.smtp_port, sender="sender@example.org", recipients=recipients)
        envelopes = {name: (await receiver.wait_for(1))[0].json()["envelope"]["rcpt_to"]
                     for name, receiver in (("ann", first), ("bob", second), ("sales", third))}

        assert envelopes == {"ann": [f"ann@{PUBLIC}", f"ann+news@{PUBLIC}"], "bob": [f"bob@{PUBLIC}"],
                             "sales": [f"sales@{PUBLIC}"]}
        await asyncio.sleep(0.5)
        assert [len(r.received) for r in receivers] == [1, 1, 1]  # one delivery per webhook
        await ann.aclose()
        await bob.aclose()
    finally:
        conduit.stop()
