"""Deliveries through an egress proxy (CONDUIT_HTTP_PROXY), end to end with each transport
(CONDUIT_HTTP_CLIENT): mail in over SMTP, the POST through a real tinyproxy on loopback
(tests/support/tinyproxy.py), the attempts in the delivery log, retries on the schedule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conduit.config import Settings
from tests.factories import create_webhook
from tests.support.conversation import _eventually, _logs, _mail, _send
from tests.support.pipeline import free_port, running
from tests.support.receiver import Receiver
from tests.support.tinyproxy import REFUSED_HOST, Tinyproxy, tinyproxy

PUBLIC = "in.example"
RETRY = 0.3  # seconds before each retry
ATTEMPTS = 3


@pytest.fixture(params=["fast", "aiohttp"])
def settings_overrides(request: pytest.FixtureRequest) -> dict:
    return {"smtp_port": free_port(), "public_domains": PUBLIC, "allow_private_targets": True,
            "inbound_auth_checks": False, "retry_schedule": ",".join(["0"] + [str(RETRY)] * (ATTEMPTS - 1)),
            "delivery_timeout": 5, "http_client": request.param}


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Tinyproxy]:
    async with tinyproxy(tmp_path) as running_proxy:
        yield running_proxy


def _through(settings: Settings, proxy_url: str) -> Settings:
    """The worker's settings with the proxy (the API of the test needs none)."""
    return settings.model_copy(update={"http_proxy": proxy_url})


async def _queue(settings: Settings, to: str) -> str:
    _, reply = await _send(settings, _mail(to))
    return reply.rsplit(" ", 1)[1]  # "250 … queued as msg_…"


async def _attempts(client, owner, webhook_id: str, count: int) -> list[dict]:
    """The webhook's delivery logs, oldest first, once there are ``count``."""
    async def probe() -> list[dict] | None:
        logs = await _logs(client, owner, webhook_id, page_size=200)
        return logs[::-1] if len(logs) >= count else None
    logs = await _eventually(probe)
    assert len(logs) == count, logs
    return logs


async def test_deliveries_go_through_the_proxy(settings, client, alice, receiver: Receiver, proxy: Tinyproxy):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(_through(settings, proxy.url())):
        message_id = await _queue(settings, f"box@{PUBLIC}")
        [received] = await receiver.wait_for(1)
        [log] = await _attempts(client, alice, hook["id"], 1)
    assert received.json()["id"] == message_id
    assert "egress-proxy" in received.headers["Via"]  # tinyproxy forwarded it
    assert proxy.requests == [f"POST {receiver.url}"]
    assert (log["status"], log["http_status"], log["error"]) == ("delivered", 200, "")


async def test_a_destination_the_proxy_refuses_is_retried_on_the_schedule_then_failed(settings, client, alice,
                                                                                      proxy: Tinyproxy):
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", f"https://{REFUSED_HOST}:8443/hook")
    async with running(_through(settings, proxy.url())):
        await _queue(settings, f"box@{PUBLIC}")
        logs = await _attempts(client, alice, hook["id"], ATTEMPTS)
    refusal = f"the proxy did not forward the request to {REFUSED_HOST}:8443: HTTP 403 Filtered"
    assert [(log["status"], log["http_status"], log["error"]) for log in logs] == [
        ("retrying", 0, refusal), ("retrying", 0, refusal), ("failed", 0, refusal)]
    assert proxy.log.count(f'Proxying refused on filtered domain "{REFUSED_HOST}"') == ATTEMPTS


async def test_an_unreachable_proxy_fails_each_attempt_cleanly(settings, client, alice, receiver: Receiver):
    port = free_port()  # no proxy listens there
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", receiver.url)
    async with running(_through(settings, f"http://127.0.0.1:{port}")):
        await _queue(settings, f"box@{PUBLIC}")
        logs = await _attempts(client, alice, hook["id"], ATTEMPTS)
    assert [(log["status"], log["http_status"]) for log in logs] == [("retrying", 0), ("retrying", 0), ("failed", 0)]
    assert all(log["error"].startswith(f"could not connect to the proxy 127.0.0.1:{port}: ") for log in logs), logs
    assert receiver.received == []
