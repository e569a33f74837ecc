"""API hardening: security headers on every answer, CORS off unless configured, and the request
body size limit (declared and streamed bodies), in-process and over a real uvicorn server."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

from conduit.api.app import create_app
from conduit.config import ConfigError, load_settings
from tests.conftest import TEST_SECRET_KEY
from tests.factories import assert_error, user
from tests.support.pipeline import free_port, running, wait_for_port

LIMIT = 4096
ORIGIN = "https://app.example.com"


@pytest.fixture
def settings_overrides() -> dict:
    return {"max_request_bytes": LIMIT}


def _assert_hardened(response: httpx.Response, *, api: bool = True) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    if api:
        assert csp.startswith("default-src 'none'")
        assert response.headers["Cache-Control"] == "no-store"


async def test_security_headers_on_success_and_error_answers(client):
    alice = await user(client)
    answers = [
        await client.get("/ping"),
        await client.get("/accounts/me", headers=alice.headers),
        await client.get("/accounts/me"),  # 401
        await client.get("/no/such/route"),  # 404
        await client.delete("/ping"),  # 405
        await client.post("/accounts", content=b"{not json", headers={"Content-Type": "application/json"}),  # 422
    ]
    assert [r.status_code for r in answers] == [200, 200, 401, 404, 405, 422]
    for response in answers:
        _assert_hardened(response)


async def test_unexpected_errors_keep_the_headers_and_error_body(settings, engine):
    app = create_app(settings, engine)

    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/v1/broken-for-test", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
            response = await c.get("/broken-for-test")
    finally:
        await app.state.context.http.close()
    assert_error(response, 500, "internal_error")
    _assert_hardened(response)


async def test_docs_csp_allows_what_swagger_ui_loads(client):
    response = await client.get("http://testserver/docs")
    assert response.status_code == 200
    _assert_hardened(response, api=False)
    directives = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    html = response.text
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    styles = re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"|<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"', html)
    icons = re.findall(r'<link[^>]*rel="shortcut icon"[^>]*href="([^"]+)"', html)
    assert scripts and icons

    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "'self'"

    for url in scripts:
        assert origin(url) in directives["script-src"].split(), url
    for pair in styles:
        url = pair[0] or pair[1]
        assert origin(url) in directives["style-src"].split(), url
    for url in icons:
        assert origin(url) in directives["img-src"].split(), url
    # Swagger UI boots with an inline script and fetches the OpenAPI document from this server.
    assert re.search(r"<script>\s*\S", html)
    assert "'unsafe-inline'" in directives["script-src"].split()
    assert "'self'" in directives["connect-src"].split()
    openapi = await client.get("http://testserver/openapi.json")
    assert openapi.status_code == 200
    _assert_hardened(openapi, api=False)


async def test_cors_is_off_by_default(client):
    preflight = await client.options("/accounts/me", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/ping", headers={"Origin": ORIGIN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": f"{ORIGIN}, https://other.example:8443/"}])
async def test_cors_allows_only_the_configured_origins(client):
    alice = await user(client)
    preflight = await client.options("/accounts/me", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    _assert_hardened(preflight, api=False)
    actual = await client.get("/accounts/me", headers={**alice.headers, "Origin": "https://other.example:8443"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "https://other.example:8443"
    stranger = await client.options("/accounts/me", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "GET"})
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    foreign = await client.get("/ping", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers


def test_cors_origins_setting_is_validated(tmp_path):
    base = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/c.db", "secret_key": TEST_SECRET_KEY}
    assert load_settings(**base).cors_origin_list == ()
    assert load_settings(**base, cors_origins="*").cors_origin_list == ("*",)
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x.example"):
        with pytest.raises(ConfigError, match="CONDUIT_CORS_ORIGINS"):
            load_settings(**base, cors_origins=bad)
    with pytest.raises(ConfigError, match="CONDUIT_MAX_REQUEST_BYTES"):
        load_settings(**base, max_request_bytes=0)
    assert load_settings(**base).max_request_bytes == 1024 * 1024


async def test_body_over_the_limit_declared_by_content_length_is_413(client):
    response = await client.post("/accounts", json={"email": "a@example.com", "password": "x" * (LIMIT + 10)})
    assert_error(response, 413, "payload_too_large")
    _assert_hardened(response)
    # Also on routes that do not read a body, and on unknown routes: nothing is read.
    assert_error(await client.post("/ping", content=b"x" * (LIMIT + 1)), 413, "payload_too_large")
    assert_error(await client.post("/no/such/route", content=b"x" * (LIMIT + 1)), 413, "payload_too_large")


async def test_streamed_body_over_the_limit_is_413(client):
    async def chunks():
        for _ in range(LIMIT // 512 + 2):
            yield b" " * 512

    response = await client.post("/accounts", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    _assert_hardened(response)


async def test_body_at_the_limit_is_read(client):
    body = b'{"email": "limit@example.com", "password": "correct horse battery"}'
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    response = await client.post("/accounts", content=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_real_server_refuses_a_chunked_body_over_the_limit(database_url, tmp_path):
    settings = load_settings(database_url=database_url, secret_key=TEST_SECRET_KEY, max_request_bytes=LIMIT,
                             http_port=free_port())

    async def chunks():
        for _ in range(LIMIT // 1024 + 4):
            yield b" " * 1024

    async with running(settings, roles=frozenset({"api"})):
        await wait_for_port(settings.http_port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}/api/v1") as c:
            refused = await c.post("/accounts", content=chunks(), headers={"Content-Type": "application/json"})
            declared = await c.post("/accounts", content=b" " * (LIMIT + 1), headers={"Content-Type": "application/json"})
            still_up = await c.get("/ping")
    assert refused.request.headers.get("transfer-encoding") == "chunked"
    assert_error(refused, 413, "payload_too_large")
    _assert_hardened(refused)
    assert_error(declared, 413, "payload_too_large")
    assert still_up.status_code == 200
