"""API hardening: security headers on every answer, CORS off unless configured, and the request
body size limit (declared and streamed bodies), in-process and over a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import h11
import httpx
import pytest

from conduit.api.app import create_app
from conduit.api.server import api_server
from conduit.config import ConfigError, Settings, load_settings
from conduit.isolation import RenderPool
from conduit.storage.database import Database
from tests.conftest import TEST_SECRET_KEY
from tests.factories import assert_error, bearer, user
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


async def test_unexpected_errors_keep_the_headers_and_error_body(settings, database):
    app = create_app(settings, database)

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
    """Swagger UI and ReDoc come from this server (tests/integration/test_docs_pages.py)."""
    response = await client.get("http://testserver/docs")
    assert response.status_code == 200
    _assert_hardened(response, api=False)
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


async def test_a_content_length_in_other_digits_is_ignored_not_a_500(client):
    """"²" (latin-1 0xB2) passes str.isdigit() but not int(); the body is still counted as it
    streams, so an over-long one is refused all the same."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"\xb2")]
    small = await client.post("/accounts", content=b'{"email": "x"}', headers=headers)
    assert_error(small, 422, "validation_error")
    large = await client.post("/accounts", content=b" " * (LIMIT + 1), headers=headers)
    assert_error(large, 413, "payload_too_large")


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
            declared = await c.post("/accounts", content=b" " * (LIMIT + 1),
                                    headers={"Content-Type": "application/json"})
            still_up = await c.get("/ping")
    assert refused.request.headers.get("transfer-encoding") == "chunked"
    assert_error(refused, 413, "payload_too_large")
    _assert_hardened(refused)
    assert_error(declared, 413, "payload_too_large")
    assert still_up.status_code == 200


# A 500 over a real server: the connection is closed, and the answer says so ----------------

OTHER_SECRET_KEY = "another-secret-key-9876543210-zyxwvutsrqponmlkjihgfedcba"


@asynccontextmanager
async def serving(settings: Settings, database: Database,
                  extra_routes: dict[str, Callable] | None = None) -> AsyncIterator[int]:
    """Conduit's own uvicorn server (conduit.api.server) in the test's loop on a free port,
    optionally with extra routes; yields the port."""
    port = free_port()
    renders = RenderPool.from_settings(settings)
    server = api_server(settings.model_copy(update={"http_port": port}), database, renders)
    for path, endpoint in (extra_routes or {}).items():
        server.config.app.add_api_route(path, endpoint)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for_port(port)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await server.config.app.state.context.http.close()
        await renders.close()


class RawConnection:
    """One HTTP/1.1 connection, requests sent one after another on it (h11 frames them), so a
    test sees whether the server keeps it open, closes it, and says so."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        all_headers = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
        self.writer.write(self.http.send(h11.Request(method=method, target=path, headers=list(all_headers.items()))))
        self.writer.write(self.http.send(h11.Data(data=body)) + self.http.send(h11.EndOfMessage()))
        await self.writer.drain()
        response, content = None, b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await asyncio.wait_for(self.reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
                    self.http.start_next_cycle()  # keep-alive: the next request may follow
                headers_seen = {k.decode(): v.decode() for k, v in response.headers}
                return response.status_code, headers_seen, content
            else:
                raise AssertionError(f"unexpected HTTP event {event!r}")

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_an_unexpected_error_answers_500_with_connection_close(settings, database):
    """After an unexpected error Starlette re-raises once the 500 is sent, and uvicorn then
    drops the connection: the 500 says ``Connection: close``, so no client sends its next
    request into a connection that is going away."""
    async def broken() -> None:
        raise RuntimeError("boom")

    async with serving(settings, database, {"/api/v1/broken-for-test": broken}) as port:
        connection = await RawConnection.open(port)
        try:
            status, headers, body = await connection.request("GET", "/api/v1/broken-for-test")
            closed = await connection.closed_by_server()
        finally:
            await connection.close()
        fresh = await RawConnection.open(port)
        try:
            still_up = (await fresh.request("GET", "/api/v1/ping"))[0]
        finally:
            await fresh.close()
    assert status == 500
    assert json.loads(body) == {"code": "internal_error", "error": "an unexpected error occurred; it has been logged"}
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert closed
    assert still_up == 200


async def test_a_secret_key_mismatch_500_keeps_the_connection_usable(client, settings, database):
    """The other 500, secret_key_mismatch (README "Rotating the secret key"), is an answer
    Conduit chose, not a crash: the connection stays open for the next request."""
    me = await user(client)
    assert (await client.post("/accounts/me/2fa/setup", headers=me.headers)).status_code == 200
    token = (await client.post("/accounts/me/api-tokens", json={"name": "ci"}, headers=me.headers)).json()["token"]
    rotated = load_settings(database_url=settings.database_url, secret_key=OTHER_SECRET_KEY)
    async with serving(rotated, database) as port:
        connection = await RawConnection.open(port)
        try:
            status, headers, body = await connection.request(
                "POST", "/api/v1/accounts/me/2fa/enable", {**bearer(token), "Content-Type": "application/json"},
                b'{"code": "123456"}')
            next_status = (await connection.request("GET", "/api/v1/ping"))[0]
        finally:
            await connection.close()
    assert status == 500
    assert json.loads(body)["code"] == "secret_key_mismatch"
    assert headers.get("connection") != "close"
    assert next_status == 200
