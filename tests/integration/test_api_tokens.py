"""API Tokens group: create (shown once), use as Bearer, IP limits, expiry, revocation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from conduit.clock import now
from conduit.storage.models import ApiToken
from tests.factories import PASSWORD, assert_error, audit_actions, bearer, execute, user

TOKENS = "/accounts/me/api-tokens"


def parse_timestamp(value: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def create_token(client, headers, **body) -> dict:
    response = await client.post(TOKENS, json={"name": "ci", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def me_status(client, token: str) -> int:
    return (await client.get("/accounts/me", headers=bearer(token))).status_code


async def test_create_shows_the_token_once(client):
    me = await user(client)
    response = await client.post(TOKENS, json={"name": "deploy bot"}, headers=me.headers)
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {"id", "name", "allowed_ips", "created_at", "expires_at", "last_used_at", "token"}
    assert created["name"] == "deploy bot"
    assert created["token"].startswith("cdt_") and len(created["token"]) > 40
    assert created["allowed_ips"] == []
    assert created["expires_at"] is None
    assert created["last_used_at"] is None
    parse_timestamp(created["created_at"])

    listed = (await client.get(TOKENS, headers=me.headers)).json()
    assert len(listed) == 1
    assert listed[0]["id"] == created["id"]
    assert listed[0]["token"] is None
    assert created["token"] not in str(listed)
    log = (await client.get("/accounts/me/audit-log", headers=me.headers)).json()
    assert log[0]["action"] == "api_token.created"
    assert log[0]["metadata"]["token_id"] == created["id"]
    assert created["token"] not in str(log)


async def test_access_tokens_and_api_tokens_are_told_apart_by_prefix(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    assert not me.access_token.startswith("cdt_")
    assert created["token"].startswith("cdt_")


async def test_an_api_token_works_as_bearer_and_records_its_last_use(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    response = await client.get("/accounts/me", headers=bearer(created["token"]))
    assert response.status_code == 200
    assert response.json()["id"] == me.id
    # It works on every authenticated endpoint, e.g. the audit log and the token list itself.
    assert (await client.get("/accounts/me/audit-log", headers=bearer(created["token"]))).status_code == 200
    listed = (await client.get(TOKENS, headers=bearer(created["token"]))).json()
    last_used = parse_timestamp(listed[0]["last_used_at"])
    assert abs(last_used - now()) < timedelta(minutes=5)


async def test_list_shows_the_callers_tokens_newest_first(client):
    alice = await user(client)
    bob = await user(client)
    first = await create_token(client, alice.headers, name="first")
    second = await create_token(client, alice.headers, name="second")
    await create_token(client, bob.headers, name="bob's")
    listed = (await client.get(TOKENS, headers=alice.headers)).json()
    assert [t["id"] for t in listed] == [second["id"], first["id"]]


async def test_token_endpoints_need_a_token(client):
    assert_error(await client.get(TOKENS), 401)
    assert_error(await client.post(TOKENS, json={"name": "x"}), 401)
    assert_error(await client.delete(f"{TOKENS}/tok_whatever"), 401)


# Allowed IPs -----------------------------------------------------------------------------


async def test_a_token_limited_to_a_network_works_only_from_it(client, client_from):
    me = await user(client)
    created = await create_token(client, me.headers, allowed_ips=["198.51.100.0/24"])
    assert created["allowed_ips"] == ["198.51.100.0/24"]
    inside = client_from("198.51.100.20")
    assert (await inside.get("/accounts/me", headers=bearer(created["token"]))).status_code == 200
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)  # from 203.0.113.7
    assert_error(await client_from("198.51.101.20").get("/accounts/me", headers=bearer(created["token"])), 401)


async def test_a_token_limited_to_single_addresses(client, client_from):
    me = await user(client)
    created = await create_token(client, me.headers, allowed_ips=["203.0.113.7", "2001:db8::1"])
    assert (await client.get("/accounts/me", headers=bearer(created["token"]))).status_code == 200
    v6 = client_from("2001:db8::1")
    assert (await v6.get("/accounts/me", headers=bearer(created["token"]))).status_code == 200
    assert_error(await client_from("203.0.113.8").get("/accounts/me", headers=bearer(created["token"])), 401)
    assert_error(await client_from("2001:db8::2").get("/accounts/me", headers=bearer(created["token"])), 401)


async def test_a_use_from_a_refused_address_does_not_count_as_a_use(client, client_from):
    me = await user(client)
    created = await create_token(client, me.headers, allowed_ips=["198.51.100.0/24"])
    await client.get("/accounts/me", headers=bearer(created["token"]))
    listed = (await client.get(TOKENS, headers=me.headers)).json()
    assert listed[0]["last_used_at"] is None


async def test_an_ip_restricted_token_creates_only_tokens_within_its_networks(client, client_from):
    me = await user(client)
    restricted = await create_token(client, me.headers, allowed_ips=["198.51.100.0/24", "2001:db8::/32"])
    inside = client_from("198.51.100.20")
    headers = bearer(restricted["token"])
    wider = (None, [], ["203.0.113.0/24"], ["198.51.0.0/16"], ["198.51.100.0/24", "10.0.0.1"], ["0.0.0.0/0"],
             ["::/0"], ["2001:db8::/31"], ["::ffff:198.51.100.1"])
    for allowed_ips in wider:
        body = {"name": "wider"} if allowed_ips is None else {"name": "wider", "allowed_ips": allowed_ips}
        error = assert_error(await inside.post(TOKENS, json=body, headers=headers), 422, "token_scope_exceeded")
        assert "allowed_ips" in error["error"], error
    assert [t["name"] for t in (await client.get(TOKENS, headers=me.headers)).json()] == ["ci"]
    # Equal or narrower networks, in either family, are fine; and the new token works.
    for allowed_ips in (["198.51.100.0/24"], ["198.51.100.0/25", "198.51.100.200", "2001:db8:1::/48"]):
        response = await inside.post(TOKENS, json={"name": "narrower", "allowed_ips": allowed_ips}, headers=headers)
        assert response.status_code == 201, response.text
    assert (await inside.get("/accounts/me", headers=bearer(response.json()["token"]))).status_code == 200


async def test_sessions_and_unrestricted_tokens_create_tokens_without_restriction(client):
    me = await user(client)
    unrestricted = await create_token(client, me.headers)
    created = await create_token(client, bearer(unrestricted["token"]), name="anywhere")
    assert created["allowed_ips"] == []
    assert (await me_status(client, created["token"])) == 200


async def test_a_malformed_allowed_ip_is_422(client):
    me = await user(client)
    for allowed_ips in (["not-an-ip"], ["10.0.0.0/33"], ["300.1.1.1"], ["10.0.0.1", ""], ["10.0.0.1-10.0.0.9"]):
        response = await client.post(TOKENS, json={"name": "ci", "allowed_ips": allowed_ips}, headers=me.headers)
        assert_error(response, 422)
    assert (await client.get(TOKENS, headers=me.headers)).json() == []


async def test_an_invalid_create_is_422(client):
    me = await user(client)
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": "ci", "expires_in": -1},
                 {"name": "ci", "expires_in": "soon"}, {"name": "ci", "expires_in": 10**12},
                 {"name": "ci", "allowed_ips": "10.0.0.1"}):
        assert_error(await client.post(TOKENS, json=body, headers=me.headers), 422)
    assert (await client.get(TOKENS, headers=me.headers)).json() == []


# Expiry ----------------------------------------------------------------------------------


async def test_a_token_without_expiry_never_expires(client):
    me = await user(client)
    for body in ({}, {"expires_in": 0}):
        created = await create_token(client, me.headers, **body)
        assert created["expires_at"] is None
    assert [t["expires_at"] for t in (await client.get(TOKENS, headers=me.headers)).json()] == [None] * 2
    # null is not a number of seconds: the document says integer, not nullable (leave it out instead).
    refused = await client.post(TOKENS, json={"name": "n", "expires_in": None}, headers=me.headers)
    assert refused.status_code == 422 and refused.json()["details"] == [
        {"field": "expires_in", "error": "Input should be a valid integer"}]


async def test_an_expired_token_is_401(client, engine):
    me = await user(client)
    created = await create_token(client, me.headers, expires_in=3600)
    expires_at = parse_timestamp(created["expires_at"])
    assert expires_at - parse_timestamp(created["created_at"]) in (timedelta(seconds=3600), timedelta(seconds=3601))
    assert await me_status(client, created["token"]) == 200

    await execute(engine, update(ApiToken).where(ApiToken.id == created["id"])
                  .values(expires_at=now() - timedelta(seconds=1)))
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)


# Revocation ------------------------------------------------------------------------------


async def test_a_revoked_token_is_401(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    kept = await create_token(client, me.headers, name="kept")
    response = await client.delete(f"{TOKENS}/{created['id']}", headers=me.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)
    assert await me_status(client, kept["token"]) == 200
    assert [t["id"] for t in (await client.get(TOKENS, headers=me.headers)).json()] == [kept["id"]]
    assert (await audit_actions(client, me.headers))[0] == "api_token.revoked"
    # Revoking it again: it is gone.
    assert_error(await client.delete(f"{TOKENS}/{created['id']}", headers=me.headers), 404)


async def test_revoking_an_unknown_token_is_404(client):
    me = await user(client)
    assert_error(await client.delete(f"{TOKENS}/tok_doesnotexist", headers=me.headers), 404)


async def test_revoking_another_accounts_token_is_404_and_leaves_it_working(client):
    alice = await user(client)
    bob = await user(client)
    bobs = await create_token(client, bob.headers)
    assert_error(await client.delete(f"{TOKENS}/{bobs['id']}", headers=alice.headers), 404)
    assert await me_status(client, bobs["token"]) == 200


async def test_a_token_can_revoke_itself(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    response = await client.delete(f"{TOKENS}/{created['id']}", headers=bearer(created["token"]))
    assert response.status_code == 204
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)


# Password change -------------------------------------------------------------------------


@pytest.mark.parametrize("revoke, survives", [(True, False), (False, True)], ids=["revoke", "keep"])
async def test_password_change_revokes_api_tokens_only_when_asked(client, revoke, survives):
    me = await user(client)
    created = await create_token(client, me.headers)
    response = await client.put("/accounts/me/password", headers=me.headers, json={
        "current_password": PASSWORD, "new_password": "a brand new password", "revoke_api_tokens": revoke})
    assert response.status_code == 204
    assert (await me_status(client, created["token"]) == 200) is survives


async def test_a_name_with_control_characters_is_422(client):
    me = await user(client)
    for name in ("nul\x00byte", "line\nbreak", "bell\x07", "del\x7f"):
        assert_error(await client.post(TOKENS, json={"name": name}, headers=me.headers), 422)
    assert (await client.get(TOKENS, headers=me.headers)).json() == []
    assert (await client.post(TOKENS, json={"name": "Déploiement ✓ 2"}, headers=me.headers)).status_code == 201


async def test_an_api_token_can_change_the_password_and_revoke_itself(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    response = await client.put("/accounts/me/password", headers=bearer(created["token"]), json={
        "current_password": PASSWORD, "new_password": "a brand new password", "revoke_api_tokens": True})
    assert response.status_code == 204
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)
    assert_error(await client.get("/accounts/me", headers=me.headers), 401)


async def test_an_api_token_can_delete_the_account(client):
    me = await user(client)
    created = await create_token(client, me.headers)
    response = await client.request("DELETE", "/accounts/me", json={"confirm": True, "password": PASSWORD},
                                    headers=bearer(created["token"]))
    assert response.status_code == 204
    assert_error(await client.get("/accounts/me", headers=bearer(created["token"])), 401)
    assert_error(await client.post("/sessions", json={"email": me.email, "password": PASSWORD}), 401)
