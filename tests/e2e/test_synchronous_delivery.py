"""Synchronous webhooks: the receiver's answer is the SMTP reply to the end of DATA (2xx → 250,
a refusal → 550 5.7.1 with its reason, anything else → 451 4.3.0), with the real SMTP server
and worker (conduit.runtime.run, as in `conduit serve`), a real SMTP client and real receivers."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from tests.factories import create_webhook
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import Receiver, Reply, verify_signature

PUBLIC = "in.example"
WORKER_POLL = 1.5  # seconds: longer than the worker's longest sleep between looks at the queue


@pytest.fixture
def settings_overrides() -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": "0,0.3,0.3"}


@pytest.fixture
async def other_receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def _refused_listed(client, owner) -> list[dict]:
    response = await client.get("/messages", params={"status": "refused"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _synchronous(client, owner, address: str, url: str, **fields) -> dict:
    hook = await create_webhook(client, owner, address, url, delivery_mode="synchronous", **fields)
    assert (hook["delivery_mode"], hook["sync_timeout_ms"]) == ("synchronous", fields.get("sync_timeout_ms", 10000))
    return hook


async def _refused(settings, to: str) -> aiosmtplib.SMTPResponseException:
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await _send(settings, _mail(to))
    return refused.value


async def _no_more_requests(receiver: Receiver, count: int) -> None:
    """The receiver still has ``count`` requests after the worker had every chance to send more."""
    await asyncio.sleep(WORKER_POLL)
    assert len(receiver.received) == count, [r.headers.get("webhook-id") for r in receiver.received]


async def test_a_2xx_answer_is_the_250_and_a_delivered_log_entry(settings, client, alice, receiver):
    hook = await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(settings):
        refused, reply = await _send(settings, _mail(f"box@{PUBLIC}"))
        assert len(receiver.received) == 1  # before the reply, not after
        await _no_more_requests(receiver, 1)
    assert refused == {}
    assert "queued as msg_" in reply
    message_id = reply.rsplit(" ", 1)[1]
    (request,) = receiver.received
    payload = verify_signature(hook["secret"], request)
    assert (payload["id"], payload["subject"], payload["envelope"]["rcpt_to"]) == (message_id, "Hello",
                                                                                   [f"box@{PUBLIC}"])
    assert request.headers["webhook-id"].startswith("job_")
    logs = await _logs(client, alice, hook["id"])
    assert [(log["status"], log["http_status"], log["smtp_message_id"], log["error"]) for log in logs] == \
        [("delivered", 200, message_id, "")]


async def test_a_refusal_with_a_reason_header_is_550_and_never_delivered_again(settings, client, alice, receiver):
    hook = await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url)
    receiver.reply(Reply(status=422, body="{}", headers={"X-Conduit-Smtp-Reason": "Unknown ticket number 4711"}))
    async with running(settings):
        refusal = await _refused(settings, f"box@{PUBLIC}")
        await _no_more_requests(receiver, 1)
    assert (refusal.code, refusal.message) == (550, "5.7.1 Unknown ticket number 4711")
    (log,) = await _logs(client, alice, hook["id"])
    assert (log["status"], log["http_status"]) == ("failed", 422)
    assert "550 5.7.1" in log["error"] and log["smtp_message_id"].startswith("msg_")
    # Refused for good: Conduit never sends it again by itself (above); the message is kept like
    # any other (CONDUIT_MESSAGE_RETENTION_DAYS), so its owner may read it and send it again by hand.
    stored = await client.get(f"/messages/{log['smtp_message_id']}", headers=alice.headers)
    assert stored.status_code == 200
    # ... and the refusal is listed with the others refused for the account, with its reply.
    refused = await _eventually(lambda: _refused_listed(client, alice))
    assert [(m["refusal_reason"], m["refusal_reply"]) for m in refused] == [
        ("receiver_refused", "550 5.7.1 Unknown ticket number 4711")]


async def test_a_refusal_with_a_text_body_gives_its_first_line_as_printable_ascii(settings, client, alice,
                                                                                receiver):
    await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url)
    receiver.reply(Reply(status=404, body="\n  Kein Empfänger\tnamens box  \r\nsecond line\n"),
                   Reply(status=400, headers={"X-Conduit-Smtp-Reason": "x" * 300}),
                   Reply(status=403, body='{"error": "json is no reason"}', headers={"Content-Type":
                                                                                    "application/json"}))
    async with running(settings):
        texts = [(await _refused(settings, f"box@{PUBLIC}")).message for _ in range(3)]
    assert texts == ["5.7.1 Kein Empf?nger namens box", "5.7.1 " + "x" * 200,
                     "5.7.1 Message refused by the receiving webhook (HTTP 403)"]


async def test_a_5xx_answer_is_451_and_leaves_nothing_queued(settings, client, alice, receiver):
    hook = await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url)
    receiver.reply(Reply(status=503, body="down for maintenance"), Reply(status=429), Reply(status=408))
    async with running(settings):
        codes = [(await _refused(settings, f"box@{PUBLIC}")) for _ in range(3)]
        await _no_more_requests(receiver, 3)
        # The sender retries; the receiver is back: that retry is the delivery.
        _, reply = await _send(settings, _mail(f"box@{PUBLIC}"))
        await _no_more_requests(receiver, 4)
    assert [(c.code, c.message.split(" ", 1)[0]) for c in codes] == [(451, "4.3.0")] * 3
    logs = await _logs(client, alice, hook["id"])
    assert [(log["status"], log["http_status"]) for log in logs] == [
        ("delivered", 200), ("failed", 408), ("failed", 429), ("failed", 503)]
    assert "451 4.3.0" in logs[-1]["error"] and "down for maintenance" in logs[-1]["error"]
    assert logs[0]["smtp_message_id"] == reply.rsplit(" ", 1)[1]


async def test_a_receiver_slower_than_the_timeout_is_451(settings, client, alice, receiver):
    hook = await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url, sync_timeout_ms=1000)
    receiver.reply(Reply(hang=True))
    async with running(settings):
        refusal = await _refused(settings, f"box@{PUBLIC}")
        await _no_more_requests(receiver, 1)
    assert (refusal.code, refusal.message.split(" ", 1)[0]) == (451, "4.3.0")
    (log,) = await _logs(client, alice, hook["id"])
    assert (log["status"], log["http_status"]) == ("failed", 0)
    assert "timeout" in log["error"]


async def test_queued_recipients_share_the_synchronous_outcome(settings, client, alice, receiver, other_receiver):
    """One reply for the transaction: the queued webhook gets the message only after a 250."""
    sync = await _synchronous(client, alice, f"sync@{PUBLIC}", receiver.url)
    queued = await create_webhook(client, alice, f"queued@{PUBLIC}", other_receiver.url)
    receiver.reply(Reply(status=200), Reply(status=422, body="no such order"), Reply(status=500))
    recipients = [f"sync@{PUBLIC}", f"queued@{PUBLIC}"]
    async with running(settings):
        refused, reply = await _send(settings, _mail(f"sync@{PUBLIC}"), rcpts=recipients)
        (later,) = await other_receiver.wait_for(1)
        for code in (550, 451):
            with pytest.raises(aiosmtplib.SMTPResponseException) as refusal:
                await _send(settings, _mail(f"sync@{PUBLIC}"), rcpts=recipients)
            assert refusal.value.code == code
        await _no_more_requests(other_receiver, 1)
    assert refused == {}
    now, queued_payload = verify_signature(sync["secret"], receiver.received[0]), verify_signature(
        queued["secret"], later)
    # The same message, rendered the same way, each with its own recipients.
    assert now["id"] == queued_payload["id"] == reply.rsplit(" ", 1)[1]
    assert set(now) == set(queued_payload)
    assert (now["envelope"]["rcpt_to"], queued_payload["envelope"]["rcpt_to"]) == ([recipients[0]], [recipients[1]])
    assert [log["status"] for log in await _logs(client, alice, queued["id"])] == ["delivered"]


async def test_a_second_synchronous_webhook_waits_for_another_transaction(settings, client, alice, receiver,
                                                                          other_receiver):
    await _synchronous(client, alice, f"one@{PUBLIC}", receiver.url)
    await _synchronous(client, alice, f"two@{PUBLIC}", other_receiver.url)
    async with running(settings):
        refused, _ = await _send(settings, _mail(f"one@{PUBLIC}"),
                                 rcpts=[f"one@{PUBLIC}", f"one+tag@{PUBLIC}", f"two@{PUBLIC}"])
        assert (refused[f"two@{PUBLIC}"].code, refused[f"two@{PUBLIC}"].message.split(" ", 1)[0]) == (452, "4.5.3")
        assert len(refused) == 1
        (request,) = receiver.received
        _, _ = await _send(settings, _mail(f"two@{PUBLIC}"))
        assert len(other_receiver.received) == 1
    assert request.json()["envelope"]["rcpt_to"] == [f"one@{PUBLIC}", f"one+tag@{PUBLIC}"]


async def test_switching_a_webhook_to_synchronous_applies_to_the_next_message(settings, database, client, alice,
                                                                             receiver):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    receiver.reply(Reply(status=422), Reply(status=422, body="refused now"))
    async with running(settings, database=database):
        await _send(settings, _mail(f"box@{PUBLIC}"))  # queued: 250, then the worker's attempt fails
        await _eventually(lambda: _logs(client, alice, hook["id"]))
        response = await client.put(f"/webhooks/{hook['id']}", headers=alice.headers,
                                    json={"delivery_mode": "synchronous", "sync_timeout_ms": 5000})
        assert response.status_code == 200, response.text
        assert (response.json()["delivery_mode"], response.json()["sync_timeout_ms"]) == ("synchronous", 5000)
        refusal = await _refused(settings, f"box@{PUBLIC}")
    assert (refusal.code, refusal.message) == (550, "5.7.1 refused now")


async def test_a_rate_limit_waits_within_the_timeout_and_defers_beyond_it(settings, client, alice, receiver):
    hook = await _synchronous(client, alice, f"box@{PUBLIC}", receiver.url, rate_limit=30, sync_timeout_ms=1000)
    async with running(settings):
        await _send(settings, _mail(f"box@{PUBLIC}"))
        refusal = await _refused(settings, f"box@{PUBLIC}")  # the next delivery is 2 s away: beyond 1 s
        assert (refusal.code, len(receiver.received)) == (451, 1)
        response = await client.put(f"/webhooks/{hook['id']}", headers=alice.headers, json={"sync_timeout_ms": 5000})
        assert response.status_code == 200, response.text
        _, reply = await _send(settings, _mail(f"box@{PUBLIC}"))  # waits for its turn, then delivers
    assert "queued as msg_" in reply and len(receiver.received) == 2
    assert [log["status"] for log in await _logs(client, alice, hook["id"])] == ["delivered", "delivered"]
