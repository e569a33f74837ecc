"""The dashboard's browser session: with `X-Conduit-Browser: 1` the refresh token lives in an
HttpOnly, SameSite=Strict cookie limited to /api/v1/sessions, never in a body a script reads;
refresh reads the cookie only with that header (a cross-site form cannot send it)."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from tests.factories import PASSWORD, TotpCodes, assert_error, bearer, sign_up, user

BROWSER = {"X-Conduit-Browser": "1"}
COOKIE = "conduit_refresh"


def set_cookie(response: httpx.Response) -> SimpleCookie:
    """The response's Set-Cookie headers, parsed (every one must be the refresh cookie)."""
    jar = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    assert set(jar) <= {COOKIE}, jar
    return jar


def cookie_header(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def browser_sign_in(client, email: str) -> tuple[str, str]:
    """(access token, refresh cookie value) of a sign-in made the dashboard's way."""
    response = await client.post("/sessions", json={"email": email, "password": PASSWORD}, headers=BROWSER)
    assert response.status_code == 200, response.text
    return response.json()["access_token"], set_cookie(response)[COOKIE].value


async def me_status(client, access_token: str) -> int:
    return (await client.get("/accounts/me", headers=bearer(access_token))).status_code


@pytest.fixture(autouse=True)
def no_cookie_jar(client):
    """Cookies are sent by hand in these tests, exactly as given."""
    client.cookies.clear()


async def test_sign_in_sets_an_httponly_strict_cookie_and_leaves_the_token_out_of_the_body(client):
    account = await sign_up(client)
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD},
                                 headers=BROWSER)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in"}
    assert body["refresh_token"] == ""
    assert await me_status(client, body["access_token"]) == 200
    morsel = set_cookie(response)[COOKIE]
    assert morsel.value.startswith("crt_")
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/api/v1/sessions"
    assert morsel["max-age"] == str(30 * 24 * 3600)
    assert not morsel["secure"]  # plain http here; see the https tests below
    assert response.headers["Cache-Control"] == "no-store"


async def test_without_the_header_sign_in_is_the_references_and_sets_no_cookie(client):
    account = await sign_up(client)
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["refresh_token"].startswith("crt_")
    assert "set-cookie" not in response.headers


async def test_refresh_reads_and_rotates_the_cookie(client):
    account = await sign_up(client)
    _, first = await browser_sign_in(client, account["email"])
    response = await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(first)})
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] == ""
    assert await me_status(client, response.json()["access_token"]) == 200
    second = set_cookie(response)[COOKIE].value
    assert second.startswith("crt_") and second != first
    # The rotated cookie works once more; the first one is spent (and replaying it revokes the sign-in).
    again = await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(second)})
    assert again.status_code == 200
    assert_error(await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(first)}), 401)
    third = set_cookie(again)[COOKIE].value
    assert_error(await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(third)}), 401)


@pytest.mark.parametrize("headers", [{}, {"X-Conduit-Browser": "0"}, {"X-Requested-With": "XMLHttpRequest"}],
                         ids=["no-header", "header-0", "other-header"])
async def test_refresh_ignores_the_cookie_without_the_header(client, headers):
    """What a cross-site form post (or any request without the custom header) gets: nothing."""
    account = await sign_up(client)
    _, token = await browser_sign_in(client, account["email"])
    response = await client.post("/sessions/refresh", headers={**headers, **cookie_header(token)})
    assert_error(response, 422, "validation_error")
    assert "set-cookie" not in response.headers
    # Not rotated: the dashboard's own refresh still works with it.
    assert (await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(token)})).status_code == 200


async def test_refresh_with_the_header_but_no_cookie_is_422(client):
    assert_error(await client.post("/sessions/refresh", headers=BROWSER), 422, "validation_error")


async def test_a_body_token_wins_over_the_cookie(client):
    me = await user(client)
    other = await sign_up(client)
    _, cookie = await browser_sign_in(client, other["email"])
    response = await client.post("/sessions/refresh", json={"refresh_token": me.refresh_token},
                                 headers=cookie_header(cookie))
    assert response.status_code == 200
    assert response.json()["refresh_token"].startswith("crt_")
    access = response.json()["access_token"]
    assert (await client.get("/accounts/me", headers=bearer(access))).json()["id"] == me.id


async def test_totp_sign_in_sets_the_cookie(client):
    me = await user(client)
    setup = await client.post("/accounts/me/2fa/setup", headers=me.headers)
    codes = TotpCodes(setup.json()["secret"])
    enabled = await client.post("/accounts/me/2fa/enable", json={"code": codes.next()}, headers=me.headers)
    assert enabled.status_code == 200
    challenge = await client.post("/sessions", json={"email": me.email, "password": PASSWORD}, headers=BROWSER)
    assert challenge.json()["totp_required"] is True
    assert "set-cookie" not in challenge.headers  # no session yet
    response = await client.post("/sessions/2fa", json={"totp_token": challenge.json()["totp_token"],
                                                        "code": codes.next()}, headers=BROWSER)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] == ""
    morsel = set_cookie(response)[COOKIE]
    assert morsel["httponly"] and morsel["samesite"].lower() == "strict"
    refreshed = await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(morsel.value)})
    assert refreshed.status_code == 200


def assert_cleared(response: httpx.Response) -> None:
    morsel = set_cookie(response)[COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == "/api/v1/sessions"


async def test_sign_out_with_the_header_revokes_this_browsers_sign_in_only(client):
    account = await sign_up(client)
    access, cookie = await browser_sign_in(client, account["email"])
    other_access, other_cookie = await browser_sign_in(client, account["email"])
    response = await client.delete("/sessions", headers={**bearer(access), **BROWSER, **cookie_header(cookie)})
    assert response.status_code == 204
    assert_cleared(response)
    assert_error(await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(cookie)}), 401)
    # The other browser is still signed in.
    assert await me_status(client, other_access) == 200
    assert (await client.post("/sessions/refresh",
                              headers={**BROWSER, **cookie_header(other_cookie)})).status_code == 200


async def test_sign_out_without_the_header_is_everywhere_and_clears_the_cookie(client):
    account = await sign_up(client)
    access, cookie = await browser_sign_in(client, account["email"])
    other_access, other_cookie = await browser_sign_in(client, account["email"])
    response = await client.delete("/sessions", headers={**bearer(access), **cookie_header(cookie)})
    assert response.status_code == 204
    assert_cleared(response)
    assert await me_status(client, other_access) == 401
    assert_error(await client.post("/sessions/refresh", headers={**BROWSER, **cookie_header(other_cookie)}), 401)


async def test_sign_out_of_an_api_client_sets_no_cookie(client):
    me = await user(client)
    response = await client.request("DELETE", "/sessions", json={"refresh_token": me.refresh_token},
                                    headers=me.headers)
    assert response.status_code == 204
    assert "set-cookie" not in response.headers


async def test_deleting_the_account_clears_the_cookie(client):
    account = await sign_up(client)
    access, _ = await browser_sign_in(client, account["email"])
    response = await client.request("DELETE", "/accounts/me", json={"confirm": True, "password": PASSWORD},
                                    headers={**bearer(access), **BROWSER})
    assert response.status_code == 204
    assert_cleared(response)


@pytest.mark.parametrize("settings_overrides", [{"base_url": "https://conduit.example.com"}], ids=["https-base-url"])
async def test_the_cookie_is_secure_behind_https(client, settings_overrides):
    account = await sign_up(client)
    response = await client.post("/sessions", json={"email": account["email"], "password": PASSWORD},
                                 headers=BROWSER)
    assert set_cookie(response)[COOKIE]["secure"] is True


async def test_the_cookie_is_secure_over_https(app):
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver/api/v1") as secure_client:
        account = await sign_up(secure_client)
        response = await secure_client.post("/sessions", json={"email": account["email"], "password": PASSWORD},
                                            headers=BROWSER)
    assert set_cookie(response)[COOKIE]["secure"] is True


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": "https://app.example.com"}], ids=["cors-on"])
async def test_a_cross_origin_script_cannot_send_the_header(client, settings_overrides):
    """Even from an origin CORS allows, the preflight for the browser header is refused."""
    preflight = await client.options("/sessions/refresh", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-conduit-browser"})
    assert preflight.status_code == 400
    assert "x-conduit-browser" not in preflight.headers.get("access-control-allow-headers", "").lower()
