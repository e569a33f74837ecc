"""Sessions group: sign in, throttling, refresh rotation and reuse detection, sign out, access tokens."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import update

from conduit.clock import now
from conduit.crypto import Crypto
from conduit.services import access_tokens
from conduit.storage.models import RefreshToken
from tests.conftest import TEST_SECRET_KEY
from tests.factories import PASSWORD, assert_error, audit_actions, bearer, execute, new_email, sign_in, sign_up, user


async def me_status(client, access_token: str) -> int:
    return (await client.get("/accounts/me", headers=bearer(access_token))).status_code


async def refresh(client, refresh_token: str):
    return await client.post("/sessions/refresh", json={"refresh_token": refresh_token})


# Sign in ---------------------------------------------------------------------------------


async def test_sign_in_returns_a_full_session(client):
    account = await sign_up(client)
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == 900
    assert body["access_token"] != body["refresh_token"]
    me = await client.get("/accounts/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == account["id"]


async def test_unknown_email_and_wrong_password_get_the_same_401(client):
    account = await sign_up(client)
    wrong_password = await client.post("/sessions", json={"email": account["email"], "password": "not the password"})
    unknown_email = await client.post("/sessions", json={"email": new_email(), "password": PASSWORD})
    not_an_email = await client.post("/sessions", json={"email": "nobody", "password": PASSWORD})
    body = assert_error(wrong_password, 401)
    assert unknown_email.status_code == not_an_email.status_code == 401
    assert unknown_email.json() == not_an_email.json() == body
    assert unknown_email.headers.get("www-authenticate") == wrong_password.headers.get("www-authenticate")


async def test_failed_sign_in_is_in_the_audit_log(client):
    account = await sign_up(client)
    await client.post("/sessions", json={"email": account["email"], "password": "not the password"})
    tokens = await sign_in(client, account["email"])
    actions = await audit_actions(client, bearer(tokens["access_token"]))
    assert actions == ["session.sign_in", "session.sign_in_failed", "account.sign_up"]


@pytest.mark.parametrize("body", [{"email": "a@example.com"}, {"password": PASSWORD}, {}])
async def test_sign_in_with_missing_fields_is_422(client, body):
    assert_error(await client.post("/sessions", json=body), 422)


# Throttling ------------------------------------------------------------------------------


def assert_throttled(response) -> None:
    assert_error(response, 429, "too_many_requests")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 15 * 60


async def test_ten_failures_for_one_email_throttle_it_even_with_the_right_password(client, client_from):
    victim = await sign_up(client)
    # Ten wrong passwords from ten different addresses, the email spelt in ever other cases: only
    # the email is over its limit.
    for n in range(10):
        spelling = victim["email"].upper() if n % 2 else f" {victim['email'].capitalize()}"
        response = await client_from(f"198.51.100.{n + 1}").post(
            "/sessions", json={"email": spelling, "password": f"guess {n}"})
        assert_error(response, 401)
    fresh_ip = client_from("198.51.100.200")
    assert_throttled(await fresh_ip.post("/sessions", json={"email": victim["email"], "password": PASSWORD}))
    # Other accounts from the same address are not affected.
    other = await sign_up(client)
    assert "access_token" in await sign_in(fresh_ip, other["email"])


async def test_ten_failures_from_one_ip_throttle_that_ip_for_every_email(client, client_from):
    account = await sign_up(client)
    attacker = client_from("198.51.100.66")
    for _ in range(10):
        assert_error(await attacker.post("/sessions", json={"email": new_email(), "password": "guess"}), 401)
    assert_throttled(await attacker.post("/sessions", json={"email": account["email"], "password": PASSWORD}))
    # The account itself and every other address are unaffected.
    assert "access_token" in await sign_in(client, account["email"])
    assert "access_token" in await sign_in(client_from("198.51.100.67"), account["email"])


async def test_nine_failures_are_not_throttled(client):
    account = await sign_up(client)
    for _ in range(9):
        assert_error(await client.post("/sessions", json={"email": account["email"], "password": "guess"}), 401)
    assert "access_token" in await sign_in(client, account["email"])


# Refresh ---------------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(client):
    me = await user(client)
    response = await refresh(client, me.refresh_token)
    assert response.status_code == 200
    rotated = response.json()
    assert set(rotated) == {"access_token", "refresh_token", "expires_in"}
    assert rotated["expires_in"] == 900
    assert rotated["refresh_token"] != me.refresh_token
    assert await me_status(client, rotated["access_token"]) == 200
    # The new refresh token rotates again; the old one is refused.
    assert (await refresh(client, rotated["refresh_token"])).status_code == 200
    assert_error(await refresh(client, me.refresh_token), 401)


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client):
    me = await user(client)
    other_session = await sign_in(client, me.email)  # a second family: another device
    second = (await refresh(client, me.refresh_token)).json()
    third = (await refresh(client, second["refresh_token"])).json()

    # Someone replays the first token (a thief's copy): refused, and the family dies.
    assert_error(await refresh(client, me.refresh_token), 401)
    assert_error(await refresh(client, third["refresh_token"]), 401)
    assert_error(await refresh(client, second["refresh_token"]), 401)

    # The other device's session lives on.
    survivor = await refresh(client, other_session["refresh_token"])
    assert survivor.status_code == 200
    actions = await audit_actions(client, bearer(survivor.json()["access_token"]))
    assert "session.refresh_token_reuse" in actions


async def test_of_concurrent_refreshes_with_one_token_exactly_one_wins(client):
    me = await user(client)
    responses = await asyncio.gather(*(refresh(client, me.refresh_token) for _ in range(4)))
    # One rotates it; the others are refused (those that come after it count as reuse).
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]


@pytest.mark.parametrize("token", ["", "garbage", "crt_not-a-real-token"])
async def test_refresh_with_an_unknown_token_is_401(client, token):
    assert_error(await refresh(client, token), 401)


async def test_refresh_with_an_expired_refresh_token_is_401(client, engine):
    me = await user(client)
    await execute(engine, update(RefreshToken).where(RefreshToken.account_id == me.id)
                  .values(expires_at=now() - timedelta(seconds=1)))
    assert_error(await refresh(client, me.refresh_token), 401)


async def test_refresh_without_a_token_is_422(client):
    assert_error(await client.post("/sessions/refresh", json={}), 422)


# Sign out --------------------------------------------------------------------------------


async def test_sign_out_revokes_the_given_refresh_token_only(client):
    me = await user(client)
    other_session = await sign_in(client, me.email)
    response = await client.request("DELETE", "/sessions", json={"refresh_token": me.refresh_token},
                                    headers=me.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await refresh(client, me.refresh_token), 401)
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200
    assert (await audit_actions(client, bearer(other_session["access_token"])))[0] == "session.sign_out"


async def test_sign_out_cannot_revoke_another_accounts_refresh_token(client):
    alice = await user(client)
    bob = await user(client)
    response = await client.request("DELETE", "/sessions", json={"refresh_token": bob.refresh_token},
                                    headers=alice.headers)
    assert response.status_code == 204
    assert (await refresh(client, bob.refresh_token)).status_code == 200


async def test_sign_out_without_a_body_signs_out_everywhere(client):
    me = await user(client)
    other_session = await sign_in(client, me.email)
    response = await client.delete("/sessions", headers=me.headers)
    assert response.status_code == 204
    # Every access token issued so far is dead at once, and every refresh token too.
    assert_error(await client.get("/accounts/me", headers=me.headers), 401)
    assert_error(await client.get("/accounts/me", headers=bearer(other_session["access_token"])), 401)
    assert_error(await refresh(client, me.refresh_token), 401)
    assert_error(await refresh(client, other_session["refresh_token"]), 401)
    # Signing in again works.
    tokens = await sign_in(client, me.email)
    assert await me_status(client, tokens["access_token"]) == 200


@pytest.mark.parametrize("body", [None, {"refresh_token": "anything"}])
async def test_sign_out_needs_a_token(client, body):
    me = await user(client)
    response = await client.request("DELETE", "/sessions", json=body)
    assert_error(response, 401)
    assert await me_status(client, me.access_token) == 200


# Access tokens ---------------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(account_id: str, **changes) -> dict:
    issued = int(now().timestamp())
    claims = {"sub": account_id, "gen": 0, "aud": access_tokens.AUDIENCE, "typ": "access",
              "iat": issued, "exp": issued + 600}
    claims.update(changes)
    return claims


async def test_a_token_crafted_with_the_instance_key_works(client):
    """The control for the tests below: a hand-made token with the right key and claims is accepted."""
    account = await sign_up(client)
    key = Crypto(TEST_SECRET_KEY).jwt_key
    token = jwt.encode(claims_for(account["id"]), key, algorithm="HS256")
    assert await me_status(client, token) == 200


async def test_a_token_with_alg_none_is_refused(client):
    account = await sign_up(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims_for(account['id']))}."
    assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


async def test_a_token_signed_with_another_key_is_refused(client):
    account = await sign_up(client)
    other_key = Crypto("another-secret-key-0123456789-abcdefghijklmnop").jwt_key
    token = jwt.encode(claims_for(account["id"]), other_key, algorithm="HS256")
    assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


async def test_a_token_signed_with_the_raw_secret_key_is_refused(client):
    account = await sign_up(client)
    token = jwt.encode(claims_for(account["id"]), TEST_SECRET_KEY.encode(), algorithm="HS256")
    assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


async def test_an_expired_access_token_is_refused(client):
    account = await sign_up(client)
    token = access_tokens.issue(Crypto(TEST_SECRET_KEY).jwt_key, account_id=account["id"], generation=0, ttl=-60)
    assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


async def test_a_token_with_wrong_claims_is_refused(client):
    account = await sign_up(client)
    key = Crypto(TEST_SECRET_KEY).jwt_key
    for changes in ({"aud": "someone-else"}, {"typ": "refresh"}, {"gen": 1}, {"gen": "0"}, {"exp": None}):
        claims = {k: v for k, v in claims_for(account["id"], **changes).items() if v is not None}
        token = jwt.encode(claims, key, algorithm="HS256")
        assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


async def test_a_token_for_an_unknown_account_is_refused(client):
    token = jwt.encode(claims_for("acc_nobody"), Crypto(TEST_SECRET_KEY).jwt_key, algorithm="HS256")
    assert_error(await client.get("/accounts/me", headers=bearer(token)), 401)


# Hostile input: an ordinary answer, never a 500 -------------------------------------------


@pytest.mark.parametrize("email", ["x" * 1000, "a" * 500 + "@example.com"], ids=["long-word", "long-address"])
async def test_sign_in_with_an_overlong_email_is_an_ordinary_401(client, email):
    response = await client.post("/sessions", json={"email": email, "password": PASSWORD})
    assert_error(response, 401, "invalid_credentials")
    # ... and it was counted like any failure: ten of them block that email.
    for n in range(9):
        assert_error(await client.post("/sessions", json={"email": email, "password": f"{n}"}), 401)
    assert_error(await client.post("/sessions", json={"email": email, "password": PASSWORD}), 429)
