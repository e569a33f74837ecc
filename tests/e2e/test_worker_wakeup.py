"""A worker in another process hears about new mail at once over PostgreSQL's NOTIFY: proven
with the worker's polling slowed to a minute, so a delivery within seconds can only come from
the announcement. (On SQLite, separate workers poll; `conduit serve` wakes its own worker
processes through a pipe, whose latency the benchmark measures.)"""

from __future__ import annotations

import asyncio

import pytest

from conduit.worker import loop as worker_module
from tests.factories import create_webhook
from tests.support.conversation import _mail, _send
from tests.support.pipeline import free_port, running

PUBLIC = "in.example"


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"public_domains": PUBLIC, "allow_private_targets": True, "inbound_auth_checks": False,
            "smtp_port": free_port(), "dns_servers": f"127.0.0.1:{dns_zone.port}"}


@pytest.fixture
def slow_polling(monkeypatch):
    monkeypatch.setattr(worker_module, "IDLE_POLL", 60.0)


async def test_a_worker_elsewhere_is_woken_by_postgres_notify(settings, database_url, client, alice, receiver,
                                                              slow_polling):
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's; on SQLite separate workers poll (serve uses its wake pipe)")
    await create_webhook(client, alice, f"box@{PUBLIC}", target_url=receiver.url)
    async with running(settings, roles=frozenset({"worker"})):
        await asyncio.sleep(1.0)  # the worker has claimed nothing, and now sleeps for a minute
        async with running(settings, roles=frozenset({"smtp"})):
            await _send(settings, _mail(f"box@{PUBLIC}", subject="wake up"))
            await receiver.wait_for(1, timeout=10)
