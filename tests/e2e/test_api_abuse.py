"""The API's answers to abuse, against a real `conduit serve` over real HTTP: concurrent password
and TOTP guesses evaluate no more than the limit, codes in other scripts' digits and templates
nested past the parser's limits are clear 4xx answers, never a 500, and the connection is still
usable after each."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import PASSWORD, TotpCodes, User, assert_error, sign_up, user
from tests.integration.test_throttle_races import ATTACKS, _assert_exactly_the_limit_evaluated, _two_factor
from tests.integration.test_two_factor import in_other_digits
from tests.integration.test_webhooks import DEEP_TEMPLATES
from tests.support.conduit_process import PUBLIC, Conduit


async def _challenge(api: httpx.AsyncClient, me: User) -> str:
    started = await api.post("/sessions", json={"email": me.email, "password": PASSWORD})
    return str(started.json()["totp_token"])


def _from(conduit: Conduit, n: int) -> httpx.AsyncClient:
    """A client at its own address (the server trusts loopback's X-Forwarded-For), so that each
    step below starts with the per-address throttles of a new client."""
    return httpx.AsyncClient(base_url=conduit.api_url, timeout=60, headers={"X-Forwarded-For": f"198.51.100.{n}"},
                             limits=httpx.Limits(max_connections=ATTACKS))


async def test_abuse_of_the_api_gets_clear_answers_from_a_real_server(tmp_path, database_url):
    conduit = Conduit(tmp_path, database_url, trusted_proxies="127.0.0.1/32")
    await conduit.start()
    try:
        async with _from(conduit, 1) as api:
            owner = await user(api)
            for template in DEEP_TEMPLATES:
                response = await api.post("/webhooks", headers=owner.headers, json={
                    "address": f"deep@{PUBLIC}", "target_url": "http://127.0.0.1:9/", "payload_template": template})
                assert assert_error(response, 422)["error"].startswith("payload_template is nested too deeply")
            assert (await api.get("/webhooks", headers=owner.headers)).json() == []

        async with _from(conduit, 2) as api:
            starting = await user(api)
            setup = await api.post("/accounts/me/2fa/setup", headers=starting.headers)
            codes = TotpCodes(setup.json()["secret"])
            for code in in_other_digits(codes.totp.now()):
                assert_error(await api.post("/accounts/me/2fa/enable", json={"code": code},
                                            headers=starting.headers), 401, "invalid_totp_code")

        async with _from(conduit, 3) as api:
            me, codes = await _two_factor(api)
            token = await _challenge(api, me)
            for code in in_other_digits(codes.totp.now()):
                assert_error(await api.post("/sessions/2fa", json={"totp_token": token, "code": code}),
                             401, "invalid_totp_code")

        async with _from(conduit, 4) as api:
            guesser, codes = await _two_factor(api)
            token, wrong = await _challenge(api, guesser), codes.wrong()
            _assert_exactly_the_limit_evaluated(await asyncio.gather(*(
                api.post("/sessions/2fa", json={"totp_token": token, "code": wrong}) for _ in range(ATTACKS))))

        async with _from(conduit, 5) as api:
            victim = await sign_up(api)
            _assert_exactly_the_limit_evaluated(await asyncio.gather(*(
                api.post("/sessions", json={"email": victim["email"], "password": f"guess {n}"})
                for n in range(ATTACKS))))
            assert (await api.get("/ping")).status_code == 200
    finally:
        conduit.stop()
