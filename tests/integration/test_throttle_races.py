"""Throttles hold under concurrency: of N attempts sent at once, never more than the limit are
evaluated (401), the rest are refused (429), on SQLite and PostgreSQL alike.

All requests go through httpx's ASGI transport in one event loop, so they interleave at every
await (the database, the password hash in its thread): exactly the interleaving that let a
check-then-count throttle evaluate two or three times its limit.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.factories import PASSWORD, TotpCodes, User, assert_error, bearer, sign_in, sign_up, user

LIMIT = 10  # conduit.services.throttle: SIGN_IN, TOTP and RESET_PER_IP
ATTACKS = 60


async def _all_at_once(*requests) -> list[httpx.Response]:
    return list(await asyncio.gather(*requests))


def _statuses(answers: list[httpx.Response]) -> Counter:
    return Counter(r.status_code for r in answers)


def _assert_exactly_the_limit_evaluated(answers: list[httpx.Response], evaluated: int = 401) -> None:
    statuses = _statuses(answers)
    assert statuses == {evaluated: LIMIT, 429: ATTACKS - LIMIT}, statuses
    for response in answers:
        if response.status_code == 429:
            assert_error(response, 429, "too_many_requests")
            assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60


async def _two_factor(client: httpx.AsyncClient) -> tuple[User, TotpCodes]:
    me = await user(client)
    setup = await client.post("/accounts/me/2fa/setup", headers=me.headers)
    codes = TotpCodes(setup.json()["secret"])
    enabled = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert enabled.status_code == 200, enabled.text
    return me, codes


async def test_concurrent_wrong_passwords_for_one_email_evaluate_at_most_the_limit(client):
    victim = await sign_up(client)
    answers = await _all_at_once(*(client.post("/sessions", json={"email": victim["email"], "password": f"guess {n}"})
                                   for n in range(ATTACKS)))
    _assert_exactly_the_limit_evaluated(answers)
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"invalid_credentials"}


async def test_concurrent_wrong_totp_codes_at_sign_in_evaluate_at_most_the_limit(client):
    me, codes = await _two_factor(client)
    started = await client.post("/sessions", json={"email": me.email, "password": PASSWORD})
    token = started.json()["totp_token"]
    wrong = codes.wrong()
    answers = await _all_at_once(*(client.post("/sessions/2fa", json={"totp_token": token, "code": wrong})
                                   for _ in range(ATTACKS)))
    _assert_exactly_the_limit_evaluated(answers)
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"invalid_totp_code"}


async def test_concurrent_wrong_codes_with_an_api_token_evaluate_at_most_the_limit(client):
    """An API token's use is recorded in the request's own transaction before the code is
    checked: the throttle must work (and not wait on itself) while that transaction writes."""
    me, codes = await _two_factor(client)
    created = await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=me.headers)
    headers = bearer(created.json()["token"])
    wrong = codes.wrong()
    answers = await _all_at_once(*(client.request("DELETE", "/accounts/me/2fa", json={"code": wrong}, headers=headers)
                                   for _ in range(ATTACKS)))
    _assert_exactly_the_limit_evaluated(answers)
    still_enabled = await client.post("/sessions", json={"email": me.email, "password": PASSWORD})
    assert "totp_token" in still_enabled.json()


async def test_concurrent_wrong_current_passwords_evaluate_at_most_the_limit(client):
    me = await user(client)
    answers = await _all_at_once(*(client.put("/accounts/me/password", headers=me.headers,
                                              json={"current_password": f"guess {n}", "new_password": "a new password"})
                                   for n in range(ATTACKS)))
    _assert_exactly_the_limit_evaluated(answers)


async def test_concurrent_reset_requests_from_one_ip_pass_at_most_the_limit(client):
    answers = await _all_at_once(*(client.post("/accounts/me/password-reset", json={"email": f"n{n}@example.com"})
                                   for n in range(ATTACKS)))
    _assert_exactly_the_limit_evaluated(answers, evaluated=202)


async def test_successes_do_not_count_towards_the_limit(client):
    account = await sign_up(client)
    for _ in range(LIMIT + 2):
        assert "access_token" in await sign_in(client, account["email"])
    for n in range(LIMIT):
        response = await client.post("/sessions", json={"email": account["email"], "password": f"guess {n}"})
        assert_error(response, 401, "invalid_credentials")
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD})
    assert_error(response, 429, "too_many_requests")
