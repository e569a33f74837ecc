"""Synchronous webhooks in a real `conduit serve` with a worker child process: the SMTP server
delivers synchronous mail itself (renderer processes and transport of its own process), the
child worker delivers the queued recipients it is told about, and a crash during a synchronous
attempt leaves nothing for anyone to deliver later."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from tests.support.conduit_process import PUBLIC, Conduit, Mailbox
from tests.support.conversation import _mail
from tests.support.receiver import Receiver, Reply

WORKER_POLL = 1.5  # seconds: longer than a worker's longest sleep between looks at the queue


@pytest.fixture
async def receivers():
    started = [Receiver(), Receiver()]
    for r in started:
        await r.start()
    yield started
    for r in started:
        await r.stop()


async def _synchronous_hook(box: Mailbox, address: str, url: str, **fields) -> dict:
    response = await box.api.post("/webhooks", headers=box.headers, json={
        "address": address, "target_url": url, "delivery_mode": "synchronous", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def _send(conduit: Conduit, to: list[str]):
    return await aiosmtplib.send(_mail(to[0]), hostname="127.0.0.1", port=conduit.smtp_port,
                                 sender="ann@sender.example", recipients=to, start_tls=False)


async def test_serve_answers_with_the_receivers_verdict_and_its_worker_delivers_the_rest(tmp_path, database_url,
                                                                                         receivers):
    sync_receiver, queued_receiver = receivers
    conduit = Conduit(tmp_path, database_url, worker_processes="1")
    await conduit.start()
    try:
        box = await Mailbox.create(conduit, queued_receiver.url, address=f"queued@{PUBLIC}")
        hook = await _synchronous_hook(box, f"sync@{PUBLIC}", sync_receiver.url)
        sync_receiver.reply(Reply(status=200), Reply(status=422, headers={"X-Conduit-Smtp-Reason": "No such user"}))

        refused, reply = await _send(conduit, [f"sync@{PUBLIC}", f"queued@{PUBLIC}"])
        assert refused == {} and "queued as msg_" in reply
        assert len(sync_receiver.received) == 1
        (queued,) = await queued_receiver.wait_for(1)
        assert queued.json()["id"] == sync_receiver.received[0].json()["id"] == reply.rsplit(" ", 1)[1]

        with pytest.raises(aiosmtplib.SMTPDataError) as refusal:
            await _send(conduit, [f"sync@{PUBLIC}", f"queued@{PUBLIC}"])
        assert (refusal.value.code, refusal.value.message) == (550, "5.7.1 No such user")
        await asyncio.sleep(WORKER_POLL)
        assert (len(sync_receiver.received), len(queued_receiver.received)) == (2, 1)
        logs = (await box.api.get(f"/webhooks/{hook['id']}/logs", headers=box.headers)).json()
        assert [(log["status"], log["http_status"]) for log in logs] == [("failed", 422), ("delivered", 200)]
        await box.aclose()
    finally:
        conduit.stop()


async def test_a_crash_during_a_synchronous_attempt_leaves_nothing_to_deliver(tmp_path, database_url, receivers):
    sync_receiver, queued_receiver = receivers
    conduit = Conduit(tmp_path, database_url, worker_processes="1")
    await conduit.start()
    try:
        box = await Mailbox.create(conduit, queued_receiver.url, address=f"queued@{PUBLIC}")
        hook = await _synchronous_hook(box, f"sync@{PUBLIC}", sync_receiver.url, sync_timeout_ms=60000)
        sync_receiver.reply(Reply(hang=True))
        sending = asyncio.create_task(_send(conduit, [f"sync@{PUBLIC}", f"queued@{PUBLIC}"]))
        await sync_receiver.wait_for(1)
        conduit.kill()
        with pytest.raises(aiosmtplib.SMTPException):  # no reply: the sender keeps the message and retries
            await sending

        await conduit.start()
        await asyncio.sleep(WORKER_POLL * 2)
        assert (len(sync_receiver.received), len(queued_receiver.received)) == (1, 0)
        assert (await box.api.get(f"/webhooks/{hook['id']}/logs", headers=box.headers)).json() == []
        await box.aclose()
    finally:
        conduit.stop()
