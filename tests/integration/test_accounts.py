"""Account group: sign up, the current account, time zone, audit log, deletion, audit retention."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from conduit.clock import now
from conduit.services.maintenance import purge_expired
from conduit.storage.models import ApiToken, AuditEntry, OneTimeToken, RefreshToken
from tests.conftest import CLIENT_IP
from tests.factories import (
    PASSWORD,
    assert_error,
    audit_actions,
    bearer,
    execute,
    new_email,
    sign_in,
    sign_up,
    user,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def parse_timestamp(value: str) -> datetime:
    assert RFC3339_UTC.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def count_rows(engine, model, account_id: str) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(select(func.count()).select_from(model).where(model.account_id == account_id))


# Sign up ---------------------------------------------------------------------------------


async def test_sign_up_returns_the_new_account(client):
    email = new_email()
    response = await client.post("/accounts", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    # totp_enabled is beyond the reference (the dashboard shows it).
    assert set(body) == {"id", "email", "timezone", "totp_enabled", "created_at", "updated_at"}
    assert body["email"] == email
    assert body["timezone"] == "UTC"
    assert body["totp_enabled"] is False
    assert isinstance(body["id"], str) and body["id"]
    created = parse_timestamp(body["created_at"])
    parse_timestamp(body["updated_at"])
    assert abs(created - now()) < timedelta(minutes=5)  # today's date, in UTC: not a local time


async def test_sign_up_lower_cases_the_email_and_sign_in_accepts_any_case(client):
    body = await sign_up(client, "Alice.Smith@Example.COM")
    assert body["email"] == "alice.smith@example.com"
    for spelling in ("alice.smith@example.com", "ALICE.SMITH@example.com"):
        assert "access_token" in await sign_in(client, spelling)


async def test_password_lengths_of_8_and_256_are_accepted(client):
    await sign_up(client, password="a" * 8)
    await sign_up(client, password="b" * 256)


@pytest.mark.parametrize("spelling", ["dup@example.com", "DUP@Example.com"])
async def test_an_email_already_registered_is_409(client, spelling):
    await sign_up(client, "dup@example.com")
    response = await client.post("/accounts", json={"email": spelling, "password": PASSWORD})
    assert_error(response, 409)


async def test_concurrent_sign_ups_with_one_email_create_one_account(client):
    responses = await asyncio.gather(*(client.post("/accounts", json={"email": spelling, "password": PASSWORD})
                                       for spelling in ("race@example.com", "Race@example.com")))
    assert sorted(r.status_code for r in responses) == [201, 409]
    [loser] = [r for r in responses if r.status_code == 409]
    assert_error(loser, 409)


@pytest.mark.parametrize("body", [
    {"email": "not-an-email", "password": PASSWORD},
    {"email": "someone@", "password": PASSWORD},
    {"email": "@example.com", "password": PASSWORD},
    {"email": "", "password": PASSWORD},
    {"email": "seven@example.com", "password": "1234567"},
    {"email": "long@example.com", "password": "x" * 257},
    {"email": "nopassword@example.com"},
    {"password": PASSWORD},
    {},
    {"email": 42, "password": PASSWORD},
], ids=["no-at", "no-domain", "no-local-part", "empty-email", "password-7", "password-257", "missing-password",
        "missing-email", "empty-body", "email-not-a-string"])
async def test_invalid_sign_up_is_422_and_creates_nothing(client, body):
    response = await client.post("/accounts", json=body)
    assert_error(response, 422)
    if isinstance(body.get("email"), str) and re.fullmatch(r"[a-z]+@example\.com", body["email"]):
        # Nothing was created: the same valid address signs up fine with a valid password.
        await sign_up(client, body["email"])


# The current account ---------------------------------------------------------------------


async def test_get_me_returns_the_signed_in_account(client):
    account = await sign_up(client)
    tokens = await sign_in(client, account["email"])
    response = await client.get("/accounts/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json() == account


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer garbage"},
    {"Authorization": "Bearer cdt_garbage"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
], ids=["no-header", "garbage", "garbage-api-token", "empty", "basic-auth"])
async def test_get_me_without_a_valid_token_is_401(client, headers):
    assert_error(await client.get("/accounts/me", headers=headers), 401)


# Time zone -------------------------------------------------------------------------------


async def test_timezone_change_is_visible_on_me_and_audited(client):
    me = await user(client)
    response = await client.put("/accounts/me/timezone", json={"timezone": "Europe/Paris"}, headers=me.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get("/accounts/me", headers=me.headers)).json()["timezone"] == "Europe/Paris"
    log = (await client.get("/accounts/me/audit-log", headers=me.headers)).json()
    assert log[0]["action"] == "account.timezone_changed"
    assert log[0]["metadata"] == {"old": "UTC", "new": "Europe/Paris"}


async def test_an_unknown_timezone_is_422_and_changes_nothing(client):
    me = await user(client)
    for body in ({"timezone": "Mars/Olympus"}, {"timezone": "europe/paris"}, {"timezone": ""},
                 {"timezone": "+02:00"}, {"timezone": None}, {}):
        response = await client.put("/accounts/me/timezone", json=body, headers=me.headers)
        assert_error(response, 422)
    assert (await client.get("/accounts/me", headers=me.headers)).json()["timezone"] == "UTC"


async def test_timezone_change_needs_a_token(client):
    assert_error(await client.put("/accounts/me/timezone", json={"timezone": "Europe/Paris"}), 401)


# Audit log -------------------------------------------------------------------------------


async def test_audit_log_lists_entries_newest_first_with_their_fields(client):
    me = await user(client)
    await client.put("/accounts/me/timezone", json={"timezone": "Asia/Tokyo"}, headers=me.headers)
    response = await client.get("/accounts/me/audit-log", headers=me.headers)
    assert response.status_code == 200
    entries = response.json()
    assert [e["action"] for e in entries] == ["account.timezone_changed", "session.sign_in", "account.sign_up"]
    for entry in entries:
        assert set(entry) == {"id", "action", "ip", "metadata", "created_at"}
        assert entry["ip"] == CLIENT_IP
        assert isinstance(entry["metadata"], dict)
        assert isinstance(entry["id"], str) and entry["id"]
    times = [parse_timestamp(e["created_at"]) for e in entries]
    assert times == sorted(times, reverse=True)
    assert len({e["id"] for e in entries}) == len(entries)


async def test_audit_log_shows_only_the_callers_entries(client):
    alice = await user(client)
    bob = await user(client)
    await client.put("/accounts/me/timezone", json={"timezone": "Asia/Tokyo"}, headers=bob.headers)
    assert await audit_actions(client, alice.headers) == ["session.sign_in", "account.sign_up"]


async def test_audit_log_limit_is_honoured(client):
    me = await user(client)
    for zone in ("Europe/Paris", "Europe/Rome", "Europe/Oslo"):
        await client.put("/accounts/me/timezone", json={"timezone": zone}, headers=me.headers)
    response = await client.get("/accounts/me/audit-log", params={"limit": 2}, headers=me.headers)
    assert response.status_code == 200
    entries = response.json()
    assert [e["metadata"]["new"] for e in entries] == ["Europe/Oslo", "Europe/Rome"]
    response = await client.get("/accounts/me/audit-log", params={"limit": 200}, headers=me.headers)
    assert len(response.json()) == 5  # sign-up, sign-in and three changes


async def test_audit_log_returns_50_entries_by_default(client):
    me = await user(client)
    zones = ["Europe/Paris", "Europe/Rome"] * 25  # with sign-up and sign-in: 52 entries
    for zone in zones:
        await client.put("/accounts/me/timezone", json={"timezone": zone}, headers=me.headers)
    entries = (await client.get("/accounts/me/audit-log", headers=me.headers)).json()
    assert len(entries) == 50
    assert {e["action"] for e in entries} == {"account.timezone_changed"}
    assert len(await audit_actions(client, me.headers, limit=200)) == 52


async def test_audit_log_limit_out_of_range_is_422(client):
    me = await user(client)
    for limit in ("0", "201", "-1", "ten", "1.5"):
        response = await client.get("/accounts/me/audit-log", params={"limit": limit}, headers=me.headers)
        assert_error(response, 422, "validation_error")


async def test_audit_log_needs_a_token(client):
    assert_error(await client.get("/accounts/me/audit-log"), 401)


async def test_purge_removes_audit_entries_older_than_180_days(client, engine, database, settings):
    me = await user(client)  # entries: account.sign_up, session.sign_in
    await execute(engine, update(AuditEntry).where(AuditEntry.account_id == me.id,
                                                   AuditEntry.action == "account.sign_up")
                  .values(created_at=now() - timedelta(days=181)))
    await execute(engine, update(AuditEntry).where(AuditEntry.account_id == me.id,
                                                   AuditEntry.action == "session.sign_in")
                  .values(created_at=now() - timedelta(days=179)))
    assert await audit_actions(client, me.headers) == ["session.sign_in", "account.sign_up"]

    async with database.transaction() as session:
        await purge_expired(session, settings=settings)

    assert await audit_actions(client, me.headers) == ["session.sign_in"]


# Deletion --------------------------------------------------------------------------------


async def test_delete_without_confirm_is_422_and_keeps_the_account(client):
    me = await user(client)
    for body in ({"password": PASSWORD}, {"password": PASSWORD, "confirm": False}, {"confirm": True}, None):
        response = await client.request("DELETE", "/accounts/me", json=body, headers=me.headers)
        assert_error(response, 422)
    assert (await client.get("/accounts/me", headers=me.headers)).status_code == 200


async def test_delete_with_a_wrong_password_is_401_and_keeps_the_account(client):
    me = await user(client)
    response = await client.request("DELETE", "/accounts/me", json={"confirm": True, "password": "wrong password"},
                                    headers=me.headers)
    assert_error(response, 401)
    assert (await client.get("/accounts/me", headers=me.headers)).status_code == 200
    assert (await audit_actions(client, me.headers))[0] == "account.reauthentication_failed"


async def test_delete_needs_a_token(client):
    response = await client.request("DELETE", "/accounts/me", json={"confirm": True, "password": PASSWORD})
    assert_error(response, 401)


async def test_delete_removes_the_account_and_everything_it_owns(client, engine):
    me = await user(client)
    created = await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=me.headers)
    api_token = created.json()["token"]
    assert (await client.post("/accounts/me/password-reset", json={"email": me.email})).status_code == 202
    owned = [ApiToken, AuditEntry, OneTimeToken, RefreshToken]
    assert all([await count_rows(engine, model, me.id) for model in owned])

    response = await client.request("DELETE", "/accounts/me", json={"confirm": True, "password": PASSWORD},
                                    headers=me.headers)
    assert response.status_code == 204

    assert_error(await client.get("/accounts/me", headers=me.headers), 401)
    assert_error(await client.get("/accounts/me", headers=bearer(api_token)), 401)
    assert_error(await client.post("/sessions/refresh", json={"refresh_token": me.refresh_token}), 401)
    assert_error(await client.post("/sessions", json={"email": me.email, "password": PASSWORD}), 401)
    assert [await count_rows(engine, model, me.id) for model in owned] == [0, 0, 0, 0]
    again = await sign_up(client, me.email)
    assert again["id"] != me.id
    # The new account starts with a clean audit log.
    tokens = await sign_in(client, me.email)
    assert await audit_actions(client, bearer(tokens["access_token"])) == ["session.sign_in", "account.sign_up"]
