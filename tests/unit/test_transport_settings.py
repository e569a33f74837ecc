"""CONDUIT_HTTP_CLIENT and CONDUIT_HTTP_PROXY: what each accepts, the one-line error otherwise,
and the transport ``webhook_client`` builds from them."""

from __future__ import annotations

import os

import pytest

from conduit.config import ConfigError, load_settings
from conduit.net.http_aiohttp import AiohttpTransport
from conduit.net.http_client import WebhookClient
from conduit.net.http_proxy import parse_proxy_url
from conduit.services.deliveries import webhook_client

KEY = "k" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith("CONDUIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


async def test_the_own_client_without_a_proxy_is_the_default():
    settings = load_settings(secret_key=KEY)
    assert (settings.http_client, settings.http_proxy) == ("fast", "")
    transport = webhook_client(settings)
    assert type(transport) is WebhookClient
    await transport.close()


async def test_the_environment_picks_the_transport_and_the_proxy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONDUIT_HTTP_CLIENT", " AIOHTTP ")
    monkeypatch.setenv("CONDUIT_HTTP_PROXY", "http://127.0.0.1:4750")
    settings = load_settings(secret_key=KEY)
    assert (settings.http_client, settings.http_proxy) == ("aiohttp", "http://127.0.0.1:4750")
    transport = webhook_client(settings)
    assert type(transport) is AiohttpTransport
    await transport.close()


@pytest.mark.parametrize("name, value, reason", [
    ("CONDUIT_HTTP_CLIENT", "httpx", "must be fast (Conduit's own client) or aiohttp"),
    ("CONDUIT_HTTP_PROXY", "https://proxy.internal:4750", "must be an http:// URL of a forward proxy"),
    ("CONDUIT_HTTP_PROXY", "socks5://127.0.0.1:1080", "must be an http:// URL of a forward proxy"),
    ("CONDUIT_HTTP_PROXY", "127.0.0.1:4750", "must be an http:// URL of a forward proxy"),
    ("CONDUIT_HTTP_PROXY", "http://:4750", "names no proxy host"),
    ("CONDUIT_HTTP_PROXY", "http://127.0.0.1:4750/path", "must be the proxy's address only"),
    ("CONDUIT_HTTP_PROXY", "http://127.0.0.1:99999", "is not a proxy URL"),
])
def test_an_invalid_value_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                         reason: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(secret_key=KEY)
    message = str(caught.value)
    assert message.startswith(f"invalid setting {name}: {reason}"), message
    assert "\n" not in message


def test_proxy_credentials_become_a_basic_proxy_authorization():
    proxy = parse_proxy_url("http://conduit:p%40ss%3Aword@proxy.internal")
    assert (proxy.host, proxy.port, proxy.url) == ("proxy.internal", 80, "http://proxy.internal:80")
    assert proxy.authorization == "Basic Y29uZHVpdDpwQHNzOndvcmQ="  # base64 of conduit:p@ss:word
    assert parse_proxy_url("http://[::1]:4750/").url == "http://[::1]:4750"
    assert parse_proxy_url("http://[::1]:4750/").authorization is None
