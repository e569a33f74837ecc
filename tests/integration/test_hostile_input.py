"""Text that JSON allows but nothing downstream can store or hash (NUL, lone surrogates) is a 422
with the Error body on every identity endpoint, never a 500; odd path IDs are a 404."""

from __future__ import annotations

import re

import pytest

from tests.factories import assert_error, user

NUL = '"nul\\u0000here"'
SURROGATE = '"lone\\ud800surrogate"'

PUBLIC = [
    ("POST", "/accounts", '{{"email": {t}, "password": "correct horse battery"}}'),
    ("POST", "/accounts", '{{"email": "x@example.com", "password": {t}}}'),
    ("POST", "/sessions", '{{"email": {t}, "password": "correct horse battery"}}'),
    ("POST", "/sessions", '{{"email": "x@example.com", "password": {t}}}'),
    ("POST", "/sessions/refresh", '{{"refresh_token": {t}}}'),
    ("POST", "/sessions/2fa", '{{"totp_token": {t}, "code": "123456"}}'),
    ("POST", "/sessions/2fa", '{{"totp_token": "ctc_x", "code": {t}}}'),
    ("POST", "/accounts/me/password-reset", '{{"email": {t}}}'),
    ("PUT", "/accounts/me/password-reset", '{{"token": {t}, "new_password": "a new password"}}'),
    ("PUT", "/accounts/me/password-reset", '{{"token": "prt_x", "new_password": {t}}}'),
]
SIGNED_IN = [
    ("PUT", "/accounts/me/timezone", '{{"timezone": {t}}}'),
    ("PUT", "/accounts/me/password", '{{"current_password": {t}, "new_password": "a new password"}}'),
    ("PUT", "/accounts/me/password", '{{"current_password": "x", "new_password": {t}}}'),
    ("DELETE", "/accounts/me", '{{"confirm": true, "password": {t}}}'),
    ("DELETE", "/sessions", '{{"refresh_token": {t}}}'),
    ("POST", "/accounts/me/2fa/enable", '{{"code": {t}}}'),
    ("POST", "/accounts/me/api-tokens", '{{"name": {t}}}'),
    ("POST", "/accounts/me/api-tokens", '{{"name": "ci", "allowed_ips": [{t}]}}'),
    ("POST", "/domains", '{{"name": {t}}}'),
    ("POST", "/smtp-policies", '{{"name": {t}}}'),
    ("POST", "/smtp-policies", '{{"name": "p", "allowed_source_ips": {t}}}'),
    ("POST", "/webhooks", '{{"address": {t}, "target_url": "https://example.net/x"}}'),
    ("POST", "/webhooks", '{{"address": "a@example.net", "target_url": {t}}}'),
]


FIELD = re.compile(r'"(\w+)": \[?\{t\}')


def _ids(cases):
    """"POST /sessions email": the operation and the field that carries the text."""
    return [" ".join((method, path, FIELD.search(template)[1])) for method, path, template in cases]


@pytest.mark.parametrize("text", [NUL, SURROGATE], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("method, path, template", PUBLIC, ids=_ids(PUBLIC))
async def test_unstorable_text_is_422_on_public_endpoints(client, method, path, template, text):
    response = await client.request(method, path, content=template.format(t=text).encode(),
                                    headers={"Content-Type": "application/json"})
    assert_error(response, 422, "validation_error")


async def test_unstorable_text_is_422_on_signed_in_endpoints(client):
    me = await user(client)
    for (method, path, template), name in zip(SIGNED_IN, _ids(SIGNED_IN), strict=True):
        for text in (NUL, SURROGATE):
            response = await client.request(method, path, content=template.format(t=text).encode(),
                                            headers={"Content-Type": "application/json", **me.headers})
            assert response.status_code == 422, (name, text, response.text)
            assert_error(response, 422, "validation_error")
    assert (await client.get("/accounts/me", headers=me.headers)).status_code == 200


async def test_an_emoji_is_fine(client):
    """Surrogate pairs are how JSON spells characters outside the BMP: they are not refused."""
    body = '{"email": "emoji@example.com", "password": "pass \\ud83d\\ude00 word"}'
    response = await client.post("/accounts", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    signed_in = await client.post("/sessions", json={"email": "emoji@example.com", "password": "pass \U0001F600 word"})
    assert signed_in.status_code == 200


async def test_an_odd_api_token_id_is_404(client):
    me = await user(client)
    for token_id in ("%00", "tok_%00", "%ED%A0%80", "x" * 300):
        assert_error(await client.delete(f"/accounts/me/api-tokens/{token_id}", headers=me.headers), 404)


async def test_a_bearer_token_with_odd_characters_is_401(client):
    for token in ("cdt_\x7f\x80\xff", "eyJ\xe9.x.y", "x" * 5000):
        header = f"Bearer {token}".encode("latin-1")  # HTTP header bytes beyond ASCII
        assert_error(await client.get("/accounts/me", headers={"Authorization": header}), 401)


async def test_odd_ids_of_management_resources_are_404(client):
    me = await user(client)
    for path in ("/domains/{}", "/smtp-policies/{}", "/webhooks/{}", "/webhooks/{}/logs",
                 "/webhooks/whk_00000000000000000000000000/logs/{}"):
        for odd in ("%00", "whk_%00", "%ED%A0%80", "x" * 300):
            assert_error(await client.get(path.format(odd), headers=me.headers), 404)
    assert_error(await client.delete("/domains/%00", headers=me.headers), 404)
