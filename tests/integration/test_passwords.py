"""Password change, and password reset through a real SMTP server (aiosmtpd) receiving the mail."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from conduit.clock import now
from conduit.storage.models import OneTimeToken
from tests.factories import PASSWORD, assert_error, audit_actions, bearer, execute, new_email, sign_in, sign_up, user
from tests.support.pipeline import free_port

NEW_PASSWORD = "a much better passphrase"
BASE_URL = "https://conduit.example.org"
RESET = "/accounts/me/password-reset"


@pytest.fixture
def settings_overrides(mail_sink):
    return {"smtp_relay_url": mail_sink.url, "base_url": BASE_URL}


def reset_token(message) -> str:
    body = message.get_content()
    tokens = set(re.findall(r"prt_[A-Za-z0-9_-]+", body))
    assert len(tokens) == 1, body
    return tokens.pop()


async def request_reset_mail(client, mail_sink, email: str) -> str:
    """Ask for a reset and return the token from the mail that arrives."""
    before = len(mail_sink.messages)
    response = await client.post(RESET, json={"email": email})
    assert response.status_code == 202, response.text
    messages = await mail_sink.wait_for(before + 1)
    return reset_token(messages[before])


async def confirm(client, token: str, new_password: str = NEW_PASSWORD):
    return await client.put(RESET, json={"token": token, "new_password": new_password})


async def sign_in_status(client, email: str, password: str) -> int:
    return (await client.post("/sessions", json={"email": email, "password": password})).status_code


# Change password -------------------------------------------------------------------------


async def test_change_password_with_a_wrong_current_password_is_401(client):
    me = await user(client)
    response = await client.put("/accounts/me/password", headers=me.headers,
                                json={"current_password": "not it", "new_password": NEW_PASSWORD})
    assert_error(response, 401)
    assert (await client.get("/accounts/me", headers=me.headers)).status_code == 200
    assert await sign_in_status(client, me.email, PASSWORD) == 200


@pytest.mark.parametrize("new_password", ["1234567", "x" * 257], ids=["7-chars", "257-chars"])
async def test_change_password_to_an_invalid_one_is_422(client, new_password):
    me = await user(client)
    response = await client.put("/accounts/me/password", headers=me.headers,
                                json={"current_password": PASSWORD, "new_password": new_password})
    assert_error(response, 422)
    assert (await client.get("/accounts/me", headers=me.headers)).status_code == 200


async def test_change_password_with_missing_fields_is_422(client):
    me = await user(client)
    response = await client.put("/accounts/me/password", headers=me.headers, json={"new_password": NEW_PASSWORD})
    assert_error(response, 422)


async def test_change_password_needs_a_token(client):
    response = await client.put("/accounts/me/password", json={"current_password": PASSWORD,
                                                               "new_password": NEW_PASSWORD})
    assert_error(response, 401)


async def test_change_password_ends_every_session(client):
    me = await user(client)
    response = await client.put("/accounts/me/password", headers=me.headers,
                                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get("/accounts/me", headers=me.headers), 401)
    assert_error(await client.post("/sessions/refresh", json={"refresh_token": me.refresh_token}), 401)
    assert await sign_in_status(client, me.email, PASSWORD) == 401
    tokens = await sign_in(client, me.email, NEW_PASSWORD)
    actions = await audit_actions(client, bearer(tokens["access_token"]))
    assert actions[:3] == ["session.sign_in", "session.sign_in_failed", "account.password_changed"]


# Password reset: the request -------------------------------------------------------------


async def test_reset_request_mails_a_token_to_a_known_address(client, mail_sink):
    account = await sign_up(client)
    response = await client.post(RESET, json={"email": account["email"].upper()})
    assert response.status_code == 202
    assert response.content == b""
    [message] = await mail_sink.wait_for(1)
    assert message["To"] == account["email"]
    assert message["X-Envelope-To"] == account["email"]
    assert "reset" in message["Subject"].lower()
    token = reset_token(message)
    # The link opens the dashboard's form; the token rides in the fragment, which no server logs.
    assert f"{BASE_URL}/#/reset-password?token={token}" in message.get_content()


async def test_reset_request_for_an_unknown_address_is_202_and_sends_nothing(client, mail_sink):
    known = await sign_up(client)
    unknown = await client.post(RESET, json={"email": new_email()})
    not_an_address = await client.post(RESET, json={"email": "nobody"})
    assert unknown.status_code == not_an_address.status_code == 202
    assert unknown.content == not_an_address.content == b""
    # A mail for a known address, asked for afterwards, is the only one that arrives.
    await request_reset_mail(client, mail_sink, known["email"])
    assert [m["To"] for m in mail_sink.messages] == [known["email"]]


@pytest.mark.parametrize("settings_overrides", [{"smtp_relay_url": f"smtp://127.0.0.1:{free_port()}"}],
                         ids=["relay-down"])
async def test_a_relay_that_is_down_does_not_fail_the_request(client, caplog, settings_overrides):
    account = await sign_up(client)
    response = await client.post(RESET, json={"email": account["email"]})
    assert response.status_code == 202
    assert "event=password_reset_mail_failed" in caplog.text
    assert (await client.get("/ping")).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{}], ids=["no-relay"])
async def test_without_a_relay_the_mail_is_written_to_the_log(client, caplog, settings_overrides):
    caplog.set_level(logging.INFO, logger="conduit.mail")
    account = await sign_up(client)
    assert (await client.post(RESET, json={"email": account["email"]})).status_code == 202
    [token] = set(re.findall(r"prt_[A-Za-z0-9_-]+", caplog.text))
    assert (await confirm(client, token)).status_code == 204


async def test_reset_requests_are_throttled_per_ip(client, client_from):
    for _ in range(10):
        assert (await client.post(RESET, json={"email": new_email()})).status_code == 202
    response = await client.post(RESET, json={"email": new_email()})
    assert_error(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert (await client_from("198.51.100.5").post(RESET, json={"email": new_email()})).status_code == 202


async def test_reset_requests_are_throttled_per_email_silently(client, client_from, mail_sink):
    victim = await sign_up(client)
    other = await sign_up(client)
    for n in range(4):  # from four addresses: only the email's own limit (3) applies
        response = await client_from(f"198.51.100.{n + 1}").post(RESET, json={"email": victim["email"]})
        assert response.status_code == 202
    await request_reset_mail(client, mail_sink, other["email"])
    recipients = [m["To"] for m in mail_sink.messages]
    assert recipients == [victim["email"]] * 3 + [other["email"]]


async def test_reset_request_is_in_the_audit_log(client, mail_sink):
    me = await user(client)
    await request_reset_mail(client, mail_sink, me.email)
    assert (await audit_actions(client, me.headers))[0] == "account.password_reset_requested"


# Password reset: the confirmation --------------------------------------------------------


async def test_reset_sets_the_password_and_revokes_sessions_and_api_tokens(client, mail_sink):
    me = await user(client)
    api_token = (await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=me.headers)).json()
    token = await request_reset_mail(client, mail_sink, me.email)

    response = await confirm(client, token)
    assert response.status_code == 204
    assert response.content == b""

    assert await sign_in_status(client, me.email, PASSWORD) == 401
    assert_error(await client.post("/sessions/refresh", json={"refresh_token": me.refresh_token}), 401)
    assert_error(await client.get("/accounts/me", headers=me.headers), 401)
    assert_error(await client.get("/accounts/me", headers=bearer(api_token["token"])), 401)
    tokens = await sign_in(client, me.email, NEW_PASSWORD)
    actions = await audit_actions(client, bearer(tokens["access_token"]))
    assert actions[:3] == ["session.sign_in", "session.sign_in_failed", "account.password_reset"]


async def test_a_reset_token_is_single_use(client, mail_sink):
    account = await sign_up(client)
    token = await request_reset_mail(client, mail_sink, account["email"])
    assert (await confirm(client, token)).status_code == 204
    assert_error(await confirm(client, token, "yet another password"), 401)
    assert await sign_in_status(client, account["email"], NEW_PASSWORD) == 200


async def test_using_a_reset_token_voids_the_earlier_ones(client, mail_sink):
    account = await sign_up(client)
    first = await request_reset_mail(client, mail_sink, account["email"])
    second = await request_reset_mail(client, mail_sink, account["email"])
    assert first != second
    assert (await confirm(client, second)).status_code == 204
    assert_error(await confirm(client, first, "yet another password"), 401)


@pytest.mark.parametrize("token", ["", "garbage", "prt_not-a-real-token"])
async def test_an_invalid_reset_token_is_401(client, token):
    assert_error(await confirm(client, token), 401)


async def test_an_expired_reset_token_is_401(client, engine, mail_sink):
    account = await sign_up(client)
    token = await request_reset_mail(client, mail_sink, account["email"])
    await execute(engine, update(OneTimeToken).where(OneTimeToken.account_id == account["id"],
                                                     OneTimeToken.purpose == "password_reset")
                  .values(expires_at=now() - timedelta(seconds=1)))
    assert_error(await confirm(client, token), 401)
    assert await sign_in_status(client, account["email"], PASSWORD) == 200


async def test_a_reset_token_is_valid_for_an_hour(client, engine, mail_sink):
    account = await sign_up(client)
    token = await request_reset_mail(client, mail_sink, account["email"])
    await execute(engine, update(OneTimeToken).where(OneTimeToken.account_id == account["id"],
                                                     OneTimeToken.purpose == "password_reset")
                  .values(created_at=now() - timedelta(minutes=59)))
    assert (await confirm(client, token)).status_code == 204


@pytest.mark.parametrize("new_password", ["1234567", "x" * 257], ids=["7-chars", "257-chars"])
async def test_reset_to_an_invalid_password_is_422_and_keeps_the_token(client, mail_sink, new_password):
    account = await sign_up(client)
    token = await request_reset_mail(client, mail_sink, account["email"])
    assert_error(await confirm(client, token, new_password), 422)
    assert (await confirm(client, token)).status_code == 204


async def test_reset_with_missing_fields_is_422(client):
    assert_error(await client.put(RESET, json={"token": "prt_x"}), 422)
    assert_error(await client.put(RESET, json={"new_password": NEW_PASSWORD}), 422)
