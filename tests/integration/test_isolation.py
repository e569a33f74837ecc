"""Cross-account isolation: another account's ID is a 404 on every route that takes an ID.

The routes are read from the application's route table, so a route added later is
tested here without anyone remembering to: a route whose ID this module cannot
supply makes ``test_every_id_route_is_covered`` fail until it is taught the resource.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import fastapi.routing
import pytest

from conduit.api.app import API_PREFIX, create_app
from conduit.clock import new_id, now
from conduit.config import load_settings
from conduit.storage.database import open_database
from conduit.storage.models import DeliveryLog
from tests.conftest import TEST_SECRET_KEY
from tests.factories import (
    User,
    assert_error,
    check_each,
    create_policy,
    create_webhook,
    store_message,
    users,
    verified_domain,
)

PUBLIC = "shared.example"
PARAM = re.compile(r"\{(\w+)\}")

# Which resource an ID parameter names: {id} by the path it follows, the others by their name.
ID_RESOURCE_BY_PREFIX = {
    f"{API_PREFIX}/domains/{{id}}": "domain",
    f"{API_PREFIX}/smtp-policies/{{id}}": "policy",
    f"{API_PREFIX}/webhooks/{{id}}": "webhook",
    f"{API_PREFIX}/accounts/me/api-tokens/{{id}}": "api_token",
    f"{API_PREFIX}/messages/{{id}}": "message",
}
RESOURCE_BY_PARAM = {"logId": "delivery_log", "index": "attachment_index"}

# Bodies that would change the resource if the route wrongly accepted another account's ID.
BODIES = {
    ("PUT", f"{API_PREFIX}/smtp-policies/{{id}}"): {"name": "hijacked", "require_spf": True},
    ("PUT", f"{API_PREFIX}/webhooks/{{id}}"): {"name": "hijacked", "target_url": "https://evil.example/steal",
                                                "active": False},
    ("POST", f"{API_PREFIX}/webhooks/{{id}}/simulate"): {"from": "x@example.org", "subject": "s", "text": "t"},
}

# Routes this module must find in the route table (guards against the generator finding nothing).
KNOWN_ID_ROUTES = {
    ("GET", "/domains/{id}"), ("DELETE", "/domains/{id}"), ("POST", "/domains/{id}/verify"),
    ("GET", "/smtp-policies/{id}"), ("PUT", "/smtp-policies/{id}"), ("DELETE", "/smtp-policies/{id}"),
    ("GET", "/webhooks/{id}"), ("PUT", "/webhooks/{id}"), ("DELETE", "/webhooks/{id}"),
    ("GET", "/webhooks/{id}/logs"), ("GET", "/webhooks/{id}/logs/{logId}"),
    ("DELETE", "/accounts/me/api-tokens/{id}"),
    ("GET", "/messages/{id}"), ("GET", "/messages/{id}/raw"), ("GET", "/messages/{id}/attachments/{index}"),
    ("DELETE", "/messages/{id}"), ("POST", "/messages/{id}/redeliver"),
}
MANAGEMENT_PREFIXES = tuple(f"{API_PREFIX}/{group}" for group in ("domains", "smtp-policies", "webhooks", "messages"))
# Signed links name a message without an account: their signature is the authority (a link that
# was not signed for that message is a 403), tested in tests/e2e/test_messages.py.
SIGNED_LINKS = f"{API_PREFIX}/links/"


def _route_table() -> list[tuple[str, str]]:
    """(method, path) of every route of a freshly built app (no database is touched)."""
    url = f"sqlite+aiosqlite:///{tempfile.gettempdir()}/conduit-route-table.db"
    settings = load_settings(database_url=url, secret_key=TEST_SECRET_KEY, dns_servers="127.0.0.1:53")
    app = create_app(settings, open_database(settings))
    # FastAPI >= 0.13x keeps included routers as branches; iter_route_contexts flattens them.
    iterate = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)
    table = set()
    for route in iterate(app.routes):
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                table.add((method, route.path))
    return sorted(table)


ROUTES = _route_table()
ID_ROUTES = [(method, path) for method, path in ROUTES if PARAM.search(path) and not path.startswith(SIGNED_LINKS)]
MANAGEMENT_ROUTES = [(method, path) for method, path in ROUTES if path.startswith(MANAGEMENT_PREFIXES)]


def _resources_of(path: str) -> dict[str, str]:
    """{parameter: resource kind} for a route's path; KeyError names what is unknown."""
    resources = {}
    for match in PARAM.finditer(path):
        name = match.group(1)
        if name == "id":
            prefix = path[: match.end()]
            if prefix not in ID_RESOURCE_BY_PREFIX:
                raise KeyError(f"{path}: which resource does {{id}} in {prefix} name? add it to ID_RESOURCE_BY_PREFIX")
            resources[name] = ID_RESOURCE_BY_PREFIX[prefix]
        elif name in RESOURCE_BY_PARAM:
            resources[name] = RESOURCE_BY_PARAM[name]
        else:
            raise KeyError(f"{path}: unknown path parameter {{{name}}}: add it to RESOURCE_BY_PARAM")
    return resources


def _url(path: str, ids: dict[str, str]) -> str:
    """The route's path relative to the client's base URL, with each parameter's resource ID."""
    resources = _resources_of(path)
    return PARAM.sub(lambda m: ids[resources[m.group(1)]], path).removeprefix(API_PREFIX)


@pytest.fixture
def settings_overrides(dns_zone) -> dict:
    return {"dns_servers": f"127.0.0.1:{dns_zone.port}", "public_domains": PUBLIC, "allow_private_targets": True}


@dataclass
class World:
    alice: User
    bob: User
    alice_ids: dict[str, str]
    bob_ids: dict[str, str]


async def _resources_for(client, owner, dns, database, domain_name: str) -> dict[str, str]:
    """One of each resource kind, owned by ``owner``."""
    domain = await verified_domain(client, owner, dns, domain_name)
    policy = await create_policy(client, owner)
    webhook = await create_webhook(client, owner, f"inbox@{domain_name}", smtp_security_policy_id=policy["id"])
    response = await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    log = DeliveryLog(id=new_id("log"), webhook_id=webhook["id"], status="delivered",
                      attempted_at=now() - timedelta(minutes=1), http_status=200, duration_ms=12, error="",
                      sender="someone@example.org", smtp_message_id="<1@example.org>", simulated=False,
                      response_excerpt="")
    async with database.transaction() as session:
        session.add(log)
    message_id = await store_message(database, webhook["id"], f"inbox@{domain_name}")
    return {"domain": domain["id"], "policy": policy["id"], "webhook": webhook["id"],
            "api_token": response.json()["id"], "delivery_log": log.id, "message": message_id,
            "attachment_index": "0"}



@pytest.fixture
async def world(client, dns_zone, database) -> World:
    alice, bob = await users(client, 2)
    alice_ids = await _resources_for(client, alice, dns_zone, database, "alice.example")
    bob_ids = await _resources_for(client, bob, dns_zone, database, "bob.example")
    return World(alice, bob, alice_ids, bob_ids)


async def _snapshot(client, owner, ids: dict[str, str]) -> dict[str, object]:
    """Everything the owner can see of their resources."""
    seen = {}
    for kind, path in (("domain", "/domains/{domain}"), ("policy", "/smtp-policies/{policy}"),
                       ("webhook", "/webhooks/{webhook}"), ("delivery_log", "/webhooks/{webhook}/logs/{delivery_log}")):
        response = await client.get(path.format(**ids), headers=owner.headers)
        assert response.status_code == 200, (kind, response.text)
        seen[kind] = response.json()
    response = await client.get(f"/messages/{ids['message']}/raw", headers=owner.headers)
    assert response.status_code == 200, response.text
    seen["message"] = response.content
    response = await client.get("/accounts/me/api-tokens", headers=owner.headers)
    seen["api_tokens"] = sorted((t["id"], t["name"]) for t in response.json())
    assert ids["api_token"] in {t for t, _ in seen["api_tokens"]}
    for listing in ("/domains", "/smtp-policies", "/webhooks", f"/webhooks/{ids['webhook']}/logs", "/messages"):
        seen[listing] = (await client.get(listing, headers=owner.headers)).json()
    return seen


def test_every_id_route_is_covered():
    """Every route with a path parameter maps to a resource this module can create."""
    for _method, path in ID_ROUTES:
        _resources_of(path)  # raises KeyError naming the route
    found = {(method, path.removeprefix(API_PREFIX)) for method, path in ID_ROUTES}
    assert KNOWN_ID_ROUTES <= found, KNOWN_ID_ROUTES - found


async def test_another_accounts_id_is_404_and_changes_nothing(client, world):
    """Bob calls every ID route with Alice's IDs (DELETEs last, so a leaking DELETE cannot hide
    a leak elsewhere); each is a 404 Error and Alice's resources stay exactly as they were."""
    before = await _snapshot(client, world.alice, world.alice_ids)

    async def check(route):
        method, path = route
        body = BODIES.get(route, {} if method in ("POST", "PUT", "PATCH") else None)
        response = await client.request(method, _url(path, world.alice_ids), json=body, headers=world.bob.headers)
        assert_error(response, 404)
        assert await _snapshot(client, world.alice, world.alice_ids) == before, "Alice's resources changed"

    await check_each(sorted(ID_ROUTES, key=lambda route: route[0] == "DELETE"), check)


async def test_another_accounts_log_through_ones_own_webhook_is_404(client, world):
    ids = {**world.bob_ids, "delivery_log": world.alice_ids["delivery_log"]}

    async def check(route):
        method, path = route
        assert_error(await client.request(method, _url(path, ids), headers=world.bob.headers), 404)

    log_routes = [route for route in ID_ROUTES if "{logId}" in route[1]]
    assert log_routes
    await check_each(log_routes, check)


async def test_lists_hold_only_the_callers_resources(client, world):
    for listing, kind in (("/domains", "domain"), ("/smtp-policies", "policy"), ("/webhooks", "webhook"),
                          ("/accounts/me/api-tokens", "api_token"), ("/messages", "message")):
        ids = {item["id"] for item in (await client.get(listing, headers=world.bob.headers)).json()}
        assert world.bob_ids[kind] in ids
        assert world.alice_ids[kind] not in ids, listing


async def test_another_accounts_resources_cannot_be_referenced(client, world):
    # A webhook on Alice's verified domain, or with Alice's policy, is refused to Bob.
    response = await client.post("/webhooks", json={"address": "x@alice.example", "target_url": "https://h.example/"},
                                 headers=world.bob.headers)
    assert_error(response, 422)
    response = await client.put(f"/webhooks/{world.bob_ids['webhook']}",
                                json={"smtp_security_policy_id": world.alice_ids["policy"]}, headers=world.bob.headers)
    assert_error(response, 422)


async def test_every_management_route_requires_authentication(client):
    async def check(route):
        method, path = route
        url = PARAM.sub("x_doesnotexist", path).removeprefix(API_PREFIX)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        assert_error(await client.request(method, url, json=body), 401)
        assert_error(await client.request(method, url, json=body, headers={"Authorization": "Bearer not-a-token"}),
                     401)

    assert len(MANAGEMENT_ROUTES) >= 15
    await check_each(MANAGEMENT_ROUTES, check)
