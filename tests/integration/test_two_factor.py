"""2FA group and the TOTP sign-in: setup, enable, challenge, replay, backup codes, throttling, disable."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import update

from conduit.clock import now
from conduit.storage.models import OneTimeToken
from tests.factories import PASSWORD, TotpCodes, User, assert_error, audit_actions, bearer, execute, user

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class TwoFactorUser:
    user: User
    codes: TotpCodes
    backup_codes: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return self.user.headers


async def set_up(client, me: User) -> TotpCodes:
    response = await client.post("/accounts/me/2fa/setup", headers=me.headers)
    assert response.status_code == 200, response.text
    return TotpCodes(response.json()["secret"])


@pytest.fixture
async def two_factor_user(client) -> TwoFactorUser:
    """A signed-in user with 2FA enabled (one TOTP code used)."""
    me = await user(client)
    codes = await set_up(client, me)
    response = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert response.status_code == 200, response.text
    return TwoFactorUser(user=me, codes=codes, backup_codes=response.json()["backup_codes"])


async def challenge(client, me: User) -> str:
    response = await client.post("/sessions", json={"email": me.email, "password": me.password})
    assert response.status_code == 200, response.text
    return response.json()["totp_token"]


async def complete(client, totp_token: str, code: str):
    return await client.post("/sessions/2fa", json={"totp_token": totp_token, "code": code})


# Setup and enable ------------------------------------------------------------------------


async def test_setup_returns_secret_otpauth_url_and_qr_code(client):
    me = await user(client)
    response = await client.post("/accounts/me/2fa/setup", headers=me.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"secret", "otpauth_url", "qr_code_png"}
    base64.b32decode(body["secret"])  # a base32 secret any authenticator app takes
    url = urlsplit(body["otpauth_url"])
    assert (url.scheme, url.netloc) == ("otpauth", "totp")
    assert unquote(url.path) == f"/Conduit:{me.email}"
    query = parse_qs(url.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["Conduit"]
    assert base64.b64decode(body["qr_code_png"], validate=True).startswith(PNG_SIGNATURE)
    assert (await audit_actions(client, me.headers))[0] == "2fa.setup"


async def test_setup_does_not_enable_2fa_yet(client):
    me = await user(client)
    await set_up(client, me)
    response = await client.post("/sessions", json={"email": me.email, "password": PASSWORD})
    assert set(response.json()) == {"access_token", "refresh_token", "expires_in"}


async def test_setup_again_replaces_the_secret_not_yet_enabled(client):
    me = await user(client)
    first = await set_up(client, me)
    second = await set_up(client, me)
    assert first.totp.secret != second.totp.secret
    response = await client.post("/accounts/me/2fa/enable", json={"code": first.next()}, headers=me.headers)
    assert_error(response, 401)
    response = await client.post("/accounts/me/2fa/enable", json={"code": second.next()}, headers=me.headers)
    assert response.status_code == 200


async def test_setup_needs_a_token(client):
    assert_error(await client.post("/accounts/me/2fa/setup"), 401)


async def test_enable_before_setup_is_422(client):
    me = await user(client)
    response = await client.post("/accounts/me/2fa/enable", json={"code": "123456"}, headers=me.headers)
    assert_error(response, 422)


async def test_enable_with_a_wrong_code_is_401_and_leaves_2fa_off(client):
    me = await user(client)
    codes = await set_up(client, me)
    response = await client.post("/accounts/me/2fa/enable", json={"code": codes.wrong()}, headers=me.headers)
    assert_error(response, 401)
    sign_in = await client.post("/sessions", json={"email": me.email, "password": PASSWORD})
    assert "access_token" in sign_in.json()


async def test_enable_returns_ten_distinct_backup_codes(client):
    me = await user(client)
    codes = await set_up(client, me)
    response = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"backup_codes"}
    assert len(body["backup_codes"]) == 10
    assert len(set(body["backup_codes"])) == 10
    assert all(isinstance(c, str) and len(c.replace("-", "")) >= 10 for c in body["backup_codes"])
    assert (await audit_actions(client, me.headers))[0] == "2fa.enabled"


async def test_enable_again_and_setup_while_enabled_are_409(client, two_factor_user):
    me = two_factor_user
    response = await client.post("/accounts/me/2fa/enable", json={"code": me.codes.wrong()}, headers=me.headers)
    assert_error(response, 409)
    assert_error(await client.post("/accounts/me/2fa/setup", headers=me.headers), 409)
    # The secret in use did not change: its codes still complete a sign-in.
    assert (await complete(client, await challenge(client, me.user), me.codes.next())).status_code == 200


# Signing in with 2FA ---------------------------------------------------------------------


async def test_sign_in_answers_exactly_a_totp_challenge(client, two_factor_user):
    response = await client.post("/sessions", json={"email": two_factor_user.user.email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"totp_required", "totp_token", "expires_in"}
    assert body["totp_required"] is True
    assert body["expires_in"] == 300
    assert isinstance(body["totp_token"], str) and len(body["totp_token"]) >= 20


async def test_a_wrong_password_with_2fa_is_still_401(client, two_factor_user):
    response = await client.post("/sessions", json={"email": two_factor_user.user.email, "password": "wrong one"})
    assert_error(response, 401)


async def test_a_valid_code_completes_the_sign_in(client, two_factor_user):
    me = two_factor_user
    response = await complete(client, await challenge(client, me.user), me.codes.next())
    assert response.status_code == 200
    session = response.json()
    assert set(session) == {"access_token", "refresh_token", "expires_in"}
    assert session["expires_in"] == 900
    assert (await client.get("/accounts/me", headers=bearer(session["access_token"]))).status_code == 200
    assert (await client.post("/sessions/refresh", json={"refresh_token": session["refresh_token"]})).status_code == 200


async def test_a_code_is_accepted_once_only(client, two_factor_user):
    me = two_factor_user
    code = me.codes.next()
    assert (await complete(client, await challenge(client, me.user), code)).status_code == 200
    replay = await complete(client, await challenge(client, me.user), code)
    assert_error(replay, 401)


async def test_of_concurrent_uses_of_one_code_exactly_one_wins(client, two_factor_user):
    me = two_factor_user
    code = me.codes.next()
    tokens = [await challenge(client, me.user) for _ in range(3)]
    responses = await asyncio.gather(*(complete(client, token, code) for token in tokens))
    assert sorted(r.status_code for r in responses) == [200, 401, 401]


async def test_the_code_used_to_enable_cannot_sign_in(client):
    me = await user(client)
    codes = await set_up(client, me)
    code = codes.next()
    assert (await client.post("/accounts/me/2fa/enable", json={"code": code}, headers=me.headers)).status_code == 200
    assert_error(await complete(client, await challenge(client, me), code), 401)


async def test_a_challenge_token_is_single_use(client, two_factor_user):
    me = two_factor_user
    token = await challenge(client, me.user)
    assert (await complete(client, token, me.codes.next())).status_code == 200
    fresh_code = me.codes.next()
    assert_error(await complete(client, token, fresh_code), 401)
    # The code was fine: it is the used token that was refused.
    assert (await complete(client, await challenge(client, me.user), fresh_code)).status_code == 200


async def test_an_expired_challenge_is_401(client, engine, two_factor_user):
    me = two_factor_user
    token = await challenge(client, me.user)
    await execute(engine, update(OneTimeToken).where(OneTimeToken.account_id == me.user.id,
                                                     OneTimeToken.purpose == "totp_challenge")
                  .values(expires_at=now() - timedelta(seconds=1)))
    assert_error(await complete(client, token, me.codes.next()), 401)


async def test_an_unknown_challenge_is_401(client, two_factor_user):
    code = two_factor_user.codes.next()
    for token in ("", "garbage", "ctc_not-a-real-challenge"):
        assert_error(await complete(client, token, code), 401)


async def test_an_access_token_is_not_a_challenge_token(client, two_factor_user):
    me = two_factor_user
    assert_error(await complete(client, me.user.access_token, me.codes.next()), 401)


async def test_a_backup_code_works_once_only(client, two_factor_user):
    me = two_factor_user
    backup = me.backup_codes[0]
    assert (await complete(client, await challenge(client, me.user), backup)).status_code == 200
    assert_error(await complete(client, await challenge(client, me.user), backup), 401)
    # The others are still good, typed any way the user likes.
    typed = me.backup_codes[1].upper().replace("-", " ")
    assert (await complete(client, await challenge(client, me.user), typed)).status_code == 200


async def test_a_backup_code_of_another_account_is_refused(client, two_factor_user):
    me = two_factor_user
    other = await user(client)
    other_codes = await set_up(client, other)
    enabled = await client.post("/accounts/me/2fa/enable", json={"code": other_codes.next()}, headers=other.headers)
    assert_error(await complete(client, await challenge(client, me.user), enabled.json()["backup_codes"][0]), 401)


async def test_wrong_codes_are_throttled(client, two_factor_user):
    me = two_factor_user
    token = await challenge(client, me.user)
    for _ in range(10):
        assert_error(await complete(client, token, me.codes.wrong()), 401)
    response = await complete(client, token, me.codes.next())
    assert_error(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert (await audit_actions(client, me.headers))[0] == "2fa.code_rejected"


# Disable and regenerate ------------------------------------------------------------------


async def test_disable_when_not_enabled_is_422(client):
    me = await user(client)
    response = await client.request("DELETE", "/accounts/me/2fa", json={"code": "123456"}, headers=me.headers)
    assert_error(response, 422)
    await set_up(client, me)  # set up but not enabled: still not enabled
    response = await client.request("DELETE", "/accounts/me/2fa", json={"code": "123456"}, headers=me.headers)
    assert_error(response, 422)


async def test_disable_with_a_wrong_code_is_401_and_keeps_2fa(client, two_factor_user):
    me = two_factor_user
    response = await client.request("DELETE", "/accounts/me/2fa", json={"code": me.codes.wrong()},
                                    headers=me.headers)
    assert_error(response, 401)
    assert "totp_token" in (await client.post("/sessions", json={"email": me.user.email,
                                                                 "password": PASSWORD})).json()


async def test_disable_turns_2fa_off(client, two_factor_user):
    me = two_factor_user
    response = await client.request("DELETE", "/accounts/me/2fa", json={"code": me.codes.next()},
                                    headers=me.headers)
    assert response.status_code == 204
    assert response.content == b""
    session = (await client.post("/sessions", json={"email": me.user.email, "password": PASSWORD})).json()
    assert set(session) == {"access_token", "refresh_token", "expires_in"}
    assert (await audit_actions(client, me.headers))[1] == "2fa.disabled"
    # The old backup codes died with it, and 2FA can be set up afresh.
    assert (await client.post("/accounts/me/2fa/setup", headers=me.headers)).status_code == 200


async def test_disable_needs_a_token(client):
    assert_error(await client.request("DELETE", "/accounts/me/2fa", json={"code": "123456"}), 401)


async def test_regenerated_backup_codes_replace_the_old_ones(client, two_factor_user):
    me = two_factor_user
    response = await client.post("/accounts/me/2fa/backup-codes", json={"code": me.codes.next()},
                                 headers=me.headers)
    assert response.status_code == 200
    new_codes = response.json()["backup_codes"]
    assert len(new_codes) == 10 and len(set(new_codes)) == 10
    assert not set(new_codes) & set(me.backup_codes)
    assert_error(await complete(client, await challenge(client, me.user), me.backup_codes[0]), 401)
    assert (await complete(client, await challenge(client, me.user), new_codes[0])).status_code == 200
    assert "2fa.backup_codes_regenerated" in await audit_actions(client, me.headers)


async def test_regenerate_with_a_wrong_code_is_401_and_keeps_the_old_codes(client, two_factor_user):
    me = two_factor_user
    response = await client.post("/accounts/me/2fa/backup-codes", json={"code": me.codes.wrong()},
                                 headers=me.headers)
    assert_error(response, 401)
    assert (await complete(client, await challenge(client, me.user), me.backup_codes[0])).status_code == 200


async def test_regenerate_when_not_enabled_is_422(client):
    me = await user(client)
    response = await client.post("/accounts/me/2fa/backup-codes", json={"code": "123456"}, headers=me.headers)
    assert_error(response, 422)


# Codes written in other digits -----------------------------------------------------------

# Unicode digits that str.isdigit() accepts but a TOTP code never has: each route answers them
# like any wrong code (401 invalid_totp_code), even when they spell the valid code.
OTHER_DIGITS = {"arabic-indic": "٠١٢٣٤٥٦٧٨٩", "full-width": "０１２３４５６７８９", "devanagari": "०१२३४५६७८९",
                "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹"}


def in_other_digits(code: str) -> list[str]:
    """The code spelt in each of OTHER_DIGITS, and once with only its last digit full-width."""
    spelt = [code.translate(str.maketrans("0123456789", digits)) for digits in OTHER_DIGITS.values()]
    return [*spelt, code[:-1] + spelt[1][-1]]


async def assert_refused_in_other_digits(codes: TotpCodes, send) -> None:
    for code in in_other_digits(codes.totp.now()):
        assert_error(await send(code), 401, "invalid_totp_code")


async def test_codes_in_other_digits_are_wrong_codes_at_sign_in(client, two_factor_user):
    me = two_factor_user
    token = await challenge(client, me.user)
    await assert_refused_in_other_digits(me.codes, lambda code: complete(client, token, code))
    assert (await complete(client, token, me.codes.next())).status_code == 200


async def test_codes_in_other_digits_are_wrong_codes_to_enable(client):
    me = await user(client)
    codes = await set_up(client, me)
    await assert_refused_in_other_digits(
        codes, lambda code: client.post("/accounts/me/2fa/enable", json={"code": code}, headers=me.headers))
    enabled = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert enabled.status_code == 200, enabled.text


async def test_codes_in_other_digits_are_wrong_codes_to_disable(client, two_factor_user):
    me = two_factor_user
    await assert_refused_in_other_digits(
        me.codes, lambda code: client.request("DELETE", "/accounts/me/2fa", json={"code": code}, headers=me.headers))
    disabled = await client.request("DELETE", "/accounts/me/2fa", json={"code": me.codes.next()}, headers=me.headers)
    assert disabled.status_code == 204, disabled.text


async def test_codes_in_other_digits_are_wrong_codes_to_regenerate_backup_codes(client, two_factor_user):
    me = two_factor_user
    await assert_refused_in_other_digits(
        me.codes, lambda code: client.post("/accounts/me/2fa/backup-codes", json={"code": code}, headers=me.headers))
    regenerated = await client.post("/accounts/me/2fa/backup-codes", json={"code": me.codes.next()},
                                    headers=me.headers)
    assert regenerated.status_code == 200, regenerated.text
