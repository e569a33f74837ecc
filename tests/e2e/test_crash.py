"""A crash loses nothing: SIGKILL the real `conduit serve` process in the middle of deliveries,
start it again, and every message that got 250 is delivered, none logged as delivered twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiosmtplib
import httpx
import pytest

from tests.support.conduit_process import PUBLIC, Conduit
from tests.support.conversation import _mail
from tests.support.receiver import Receiver, Reply

MESSAGES = 60


@pytest.fixture
async def receiver():
    r = Receiver()
    r.default = Reply(delay=0.05)  # slow enough that the kill lands mid-delivery
    await r.start()
    yield r
    await r.stop()


async def test_sigkill_mid_delivery_loses_nothing_and_delivers_once(tmp_path, database_url, receiver):
    conduit = Conduit(tmp_path, database_url)
    await conduit.start()
    try:
        api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{conduit.http_port}/api/v1", timeout=30)
        await api.post("/accounts", json={"email": "crash@example.com", "password": "correct horse"})
        token = (await api.post("/sessions", json={"email": "crash@example.com",
                                                   "password": "correct horse"})).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        hook = (await api.post("/webhooks", headers=headers,
                               json={"address": f"box@{PUBLIC}", "target_url": receiver.url})).json()

        accepted = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=conduit.smtp_port) as smtp:
            for n in range(MESSAGES):
                _, reply = await smtp.send_message(_mail(f"box@{PUBLIC}", subject=f"m{n}"))
                accepted.append(reply.rsplit(" ", 1)[1])
        await receiver.wait_for(MESSAGES // 4)
        conduit.kill()
        delivered_before = len(receiver.received)
        assert delivered_before < MESSAGES, "the kill came too late to prove anything"

        await conduit.start()
        # At least once: a delivery in flight at the kill may arrive twice, so count distinct ids.
        while not {r.json()["id"] for r in receiver.received} >= set(accepted):
            await receiver.wait_for(len(receiver.received) + 1, timeout=60)

        async def delivered_logs() -> Counter:
            logs = (await api.get(f"/webhooks/{hook['id']}/logs", headers=headers,
                                  params={"status": "delivered", "page_size": 200})).json()
            return Counter(log["smtp_message_id"] for log in logs)

        for _ in range(300):  # the killed worker's leases expire after CONDUIT_DELIVERY_LEASE
            counts = await delivered_logs()
            if set(counts) >= set(accepted):
                break
            await asyncio.sleep(0.1)
        assert set(counts) == set(accepted)
        assert max(counts.values()) == 1
        await api.aclose()
    finally:
        conduit.stop()
