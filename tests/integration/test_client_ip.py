"""Which client IP Conduit sees (audit log, throttling, API-token IP limits) behind trusted proxies."""

from __future__ import annotations

import pytest

from tests.conftest import CLIENT_IP
from tests.factories import PASSWORD, bearer, new_email, sign_in, sign_up

PROXIES = {"trusted_proxies": "203.0.113.0/24, 2001:db8:ffff::/48"}  # the test client is 203.0.113.7


@pytest.fixture
def settings_overrides():
    return PROXIES


async def ip_seen(client, headers) -> str:
    """Sign up with these request headers; the IP of the sign-up entry in the audit log."""
    account = await client.post("/accounts", json={"email": new_email(), "password": PASSWORD}, headers=headers)
    assert account.status_code == 201, account.text
    tokens = await sign_in(client, account.json()["email"])
    log = (await client.get("/accounts/me/audit-log", headers=bearer(tokens["access_token"]))).json()
    [entry] = [e for e in log if e["action"] == "account.sign_up"]
    return entry["ip"]


@pytest.mark.parametrize("forwarded_for, expected", [
    ("198.51.100.9", "198.51.100.9"),
    # The client's own claim (192.0.2.1) is not believed: the nearest untrusted hop is.
    ("192.0.2.1, 198.51.100.9, 203.0.113.1", "198.51.100.9"),
    ("2001:db8::42", "2001:db8::42"),
    # Every hop is one of our proxies: the one furthest away is the client.
    ("203.0.113.50, 203.0.113.1", "203.0.113.50"),
    # A malformed header proves nothing: the peer is the client.
    ("not-an-ip", CLIENT_IP),
    ("198.51.100.9, garbage", CLIENT_IP),
    ("", CLIENT_IP),
], ids=["one-hop", "chain", "ipv6", "all-trusted", "garbage", "garbage-hop", "empty"])
async def test_a_trusted_proxy_decides_the_client_ip(client, forwarded_for, expected):
    assert await ip_seen(client, {"X-Forwarded-For": forwarded_for}) == expected


async def test_without_the_header_the_peer_is_the_client(client):
    assert await ip_seen(client, {}) == CLIENT_IP


async def test_a_proxy_adding_its_own_header_line_is_believed_over_the_clients(client):
    """A proxy that appends a second X-Forwarded-For line (instead of extending the client's) must
    not let the client's first line pick the address."""
    headers = [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "198.51.100.9")]
    assert await ip_seen(client, headers) == "198.51.100.9"


async def test_an_untrusted_peer_cannot_choose_its_ip(client_from):
    stranger = client_from("198.51.100.77")
    assert await ip_seen(stranger, {"X-Forwarded-For": "192.0.2.1"}) == "198.51.100.77"


async def test_throttling_counts_the_forwarded_ip(client):
    account = await sign_up(client)
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    for _ in range(10):
        response = await client.post("/sessions", json={"email": new_email(), "password": "guess"}, headers=attacker)
        assert response.status_code == 401
    blocked = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD}, headers=attacker)
    assert blocked.status_code == 429
    # The proxy itself and other clients behind it are not blocked.
    assert (await client.post("/sessions", json={"email": account["email"], "password": PASSWORD})).status_code == 200
    other = {"X-Forwarded-For": "198.51.100.67"}
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD}, headers=other)
    assert response.status_code == 200


async def test_api_token_ip_limits_use_the_forwarded_ip(client):
    account = await sign_up(client)
    tokens = await sign_in(client, account["email"])
    created = await client.post("/accounts/me/api-tokens", json={"name": "ci", "allowed_ips": ["198.51.100.0/24"]},
                                headers=bearer(tokens["access_token"]))
    token = created.json()["token"]
    inside = {"X-Forwarded-For": "198.51.100.9", **bearer(token)}
    outside = {"X-Forwarded-For": "192.0.2.1", **bearer(token)}
    assert (await client.get("/accounts/me", headers=inside)).status_code == 200
    assert (await client.get("/accounts/me", headers=outside)).status_code == 401


@pytest.mark.parametrize("settings_overrides", [{}], ids=["no-trusted-proxies"])
async def test_without_trusted_proxies_the_header_is_ignored(client, settings_overrides):
    assert await ip_seen(client, {"X-Forwarded-For": "198.51.100.9"}) == CLIENT_IP
