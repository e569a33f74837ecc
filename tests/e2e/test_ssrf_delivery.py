"""The SSRF guard runs again at delivery time on the address actually connected to, so a host
that resolved to a public address when the webhook was saved and to loopback now is refused."""

from __future__ import annotations

import pytest

from tests.factories import create_webhook, user

PUBLIC = "in.example"


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "allow_private_targets": False,
            "dns_timeout": 1}


async def test_dns_rebinding_to_loopback_is_refused_at_delivery(client, dns_zone):
    alice = await user(client)
    dns_zone.add("hooks.rebind.example", "A", "93.184.216.34")
    hook = await create_webhook(client, alice, f"box@{PUBLIC}", "http://hooks.rebind.example:9/x")
    dns_zone.clear()
    dns_zone.add("hooks.rebind.example", "A", "127.0.0.1")
    response = await client.post(f"/webhooks/{hook['id']}/simulate", headers=alice.headers, json={})
    body = response.json()
    assert response.status_code == 200
    assert (body["http_status"], body["simulated"]) == (0, True)
    assert "127.0.0.1" in body["error"]
    logs = (await client.get(f"/webhooks/{hook['id']}/logs", headers=alice.headers)).json()
    assert (logs[0]["status"], logs[0]["http_status"]) == ("failed", 0)
