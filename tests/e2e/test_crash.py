"""A crash loses nothing: SIGKILL the real `conduit serve` process in the middle of deliveries,
start it again, and every message that got 250 is delivered, none logged as delivered twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tests.support.conversation import _mail
from tests.support.pipeline import free_port, wait_for_port
from tests.support.receiver import Receiver, Reply

PUBLIC = "in.example"
MESSAGES = 60


@pytest.fixture
async def receiver():
    r = Receiver()
    r.default = Reply(delay=0.05)  # slow enough that the kill lands mid-delivery
    await r.start()
    yield r
    await r.stop()


class Conduit:
    """`conduit serve` as a child process on free ports."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.http_port, self.smtp_port = free_port(), free_port()
        self.env = {**os.environ, "CONDUIT_DATABASE_URL": database_url, "CONDUIT_HTTP_PORT": str(self.http_port),
                    "CONDUIT_SMTP_PORT": str(self.smtp_port), "CONDUIT_SECRET_KEY": "k" * 40,
                    "CONDUIT_PUBLIC_DOMAINS": PUBLIC, "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
                    "CONDUIT_INBOUND_AUTH_CHECKS": "false", "CONDUIT_RETRY_SCHEDULE": "0,0.5,0.5,0.5",
                    # A short HTTP timeout makes a short lease: the killed worker's jobs resume soon.
                    "CONDUIT_DELIVERY_TIMEOUT": "1",
                    "CONDUIT_LOG_LEVEL": "WARNING"}
        self.log = tmp_path / "conduit.log"
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "conduit", "serve"], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        await wait_for_port(self.smtp_port, timeout=30)
        await wait_for_port(self.http_port, timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


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

        for _ in range(300):  # the killed worker's leases expire after delivery_timeout + 5 s
            counts = await delivered_logs()
            if set(counts) >= set(accepted):
                break
            await asyncio.sleep(0.1)
        assert set(counts) == set(accepted)
        assert max(counts.values()) == 1
        await api.aclose()
    finally:
        conduit.stop()
